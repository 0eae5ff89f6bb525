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


@needs_compiler
def test_image_is_rv32im_without_compressed_instructions(tmp_path) -> None:
    image = firmware.build(out=tmp_path)
    assert (tmp_path / "firmware.elf").exists()
    assert len(image) % 4 == 0 and len(image) < 8192
    # Every instruction word of a non-compressed program has its two low bits set; the image
    # holds no data besides code (no .rodata/.data at the moment), so check every word.
    words = struct.unpack(f"<{len(image) // 4}I", image)
    assert all(w & 3 == 3 for w in words)


def test_build_without_sources_says_what_to_do(tmp_path) -> None:
    with pytest.raises(firmware.ToolchainError):
        firmware.build(src=tmp_path)
