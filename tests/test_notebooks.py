"""The notebooks in notebooks/ run top to bottom on the emulator, in a kernel of this very
interpreter, and are installed where PYNQ's ``pynq get-notebooks`` looks for them."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks_and_an_entry_point() -> None:
    assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "solver", "graphs"}
    text = (ROOT / "pyproject.toml").read_text()
    assert '[project.entry-points."pynq.notebooks"]' in text
    assert 'fiberflow = "fiberflow.notebooks"' in text
    import fiberflow.notebooks

    assert pathlib.Path(fiberflow.notebooks.__path__[0]).resolve() == (ROOT / "notebooks")


# Run in a child process: jupyter_client leaves its sockets to the garbage collector, which
# this suite's warnings-as-errors would report against whichever test runs next.
RUNNER = """
import json, pathlib, sys
import nbclient, nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

src, work = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
spec = work / "kernels" / "fiberflow-test"  # a kernel of this very interpreter
spec.mkdir(parents=True)
argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
kernel = {"argv": argv, "display_name": "t", "language": "python"}
(spec / "kernel.json").write_text(json.dumps(kernel))
specs = KernelSpecManager(kernel_dirs=[str(spec.parent)])
km = KernelManager(kernel_name="fiberflow-test", kernel_spec_manager=specs)
nb = nbformat.read(src, as_version=4)
where = {"metadata": {"path": str(work)}}
nbclient.NotebookClient(nb, km=km, timeout=600, resources=where).execute()
nbformat.write(nb, work / "out.ipynb")
"""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")  # kept clean
    run = subprocess.run([sys.executable, "-c", RUNNER, str(path), str(tmp_path)],
                         capture_output=True, text=True, timeout=900)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    done = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    code = [c for c in done.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code)  # every cell ran
    assert not [o for c in code for o in c.outputs if o.get("output_type") == "error"]
