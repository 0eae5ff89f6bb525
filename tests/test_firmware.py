"""The control firmware: the shipped image is a rebuild of the current sources."""

from __future__ import annotations

import importlib.util
import struct

import pytest

from fiberflow.overlay import firmware

needs_compiler = pytest.mark.skipif(
    importlib.util.find_spec("ziglang") is None, reason="needs the ziglang wheel (hw extra)"
)


@needs_compiler
def test_shipped_image_matches_the_sources() -> None:
    built = firmware.build()
    assert built == firmware.image(), (
        "overlay/firmware.bin is stale; run: python -m fiberflow.overlay.firmware"
    )


def elf_section(elf: bytes, name: str) -> tuple[int, int]:
    """(file offset, size) of section ``name`` of a little-endian ELF32 file."""
    (shoff,) = struct.unpack_from("<I", elf, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x2E)

    def header(i: int) -> tuple[int, ...]:
        return struct.unpack_from("<10I", elf, shoff + i * shentsize)

    strtab = header(shstrndx)[4]
    for i in range(shnum):
        h = header(i)
        end = elf.index(b"\0", strtab + h[0])
        if elf[strtab + h[0] : end].decode() == name:
            return h[4], h[5]
    raise KeyError(name)


@needs_compiler
def test_image_is_rv32im_without_compressed_instructions(tmp_path) -> None:
    image = firmware.build(out=tmp_path)
    elf = (tmp_path / "firmware.elf").read_bytes()
    # The image fits the shell's RAM (firmware/link.ld's 16 KiB, the default ram_bytes), with
    # room for the walker's state and the stack (the link checks the stack's 512 bytes).
    assert len(image) < 16384 - 2048
    offset, size = elf_section(elf, ".text")
    assert size > 256 and image[:size] == elf[offset : offset + size]  # code first, at 0
    # Every instruction of a program without compressed instructions has its two low bits set
    # (and the code holds no data: constants live in .rodata).
    words = struct.unpack(f"<{size // 4}I", image[:size])
    assert all(w & 3 == 3 for w in words)


def test_build_without_sources_says_what_to_do(tmp_path) -> None:
    with pytest.raises(firmware.ToolchainError, match=r"no firmware sources at .*source checkout"):
        firmware.build(src=tmp_path)


@needs_compiler
@pytest.mark.rtl
def test_phase_profile_accounts_for_the_job() -> None:
    """scripts/firmware_phases.py on a small SpMV: every phase of fw.h's enum is named, the
    walk's per-tile phases are entered once per tile, and the sampled cycles add up to the job
    (the shipped image has no marks: test_shipped_image_matches_the_sources)."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "firmware_phases.py"
    out = subprocess.run(
        [sys.executable, str(script), "--n", "1500", "--per-row", "3"],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout  # fmt: skip
    head = re.search(r"(\d+) tiles: ([\d,]+) cycles with the phase marks, ([\d,]+) with", out)
    assert head, out
    tiles, marked, shipped = (int(g.replace(",", "")) for g in head.groups())
    assert abs(marked - shipped) < 0.1 * shipped
    rows = {m[1]: (int(m[2].replace(",", "")), int(m[3]))
            for m in re.finditer(r"^(\w+) +([\d,]+) +[\d.]+% +(\d+)", out, flags=re.M)}  # fmt: skip
    # Once per tile: here each lane has one tile, read and then queued in a round of the walk,
    # so no two calls of one step follow each other (they would count as one entry).
    for phase in ("prepare", "load"):
        assert rows[phase][1] == tiles, out
    # The samples run from the doorbell to the status (the job's own count starts when the
    # firmware sees the doorbell): within a few samples of the job's cycles.
    assert abs(sum(c for c, _ in rows.values()) - marked) < 300, out
