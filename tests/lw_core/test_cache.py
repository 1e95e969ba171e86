"""The convert-once cache: keyed by the source's bytes, atomic, and never counting a half folder as done."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from lw_core.cache import MARKER, convert_once, is_converted


class Converter:
    """Copies the source into the folder and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, source: Path, folder: Path) -> None:
        self.calls += 1
        (folder / "copy.bin").write_bytes(source.read_bytes())


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"weights v1")
    return path


def test_unchanged_source_is_converted_once_and_not_rehashed(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    convert = Converter()
    target = convert_once(source, tmp_path / "out", convert)
    assert (target / "copy.bin").read_bytes() == b"weights v1" and convert.calls == 1
    monkeypatch.setattr(hashlib, "sha256", lambda: pytest.fail("an unchanged source was hashed again"))
    assert convert_once(source, target, convert) == target and convert.calls == 1


def test_same_size_new_content_is_converted_again(source: Path, tmp_path: Path) -> None:
    convert = Converter()
    target = convert_once(source, tmp_path / "out", convert)
    stat = source.stat()
    source.write_bytes(b"weights v2")  # a retrained model of the same size
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # a coarse clock may not move on its own
    assert source.stat().st_size == stat.st_size and not is_converted(target, source)
    convert_once(source, target, convert)
    assert (target / "copy.bin").read_bytes() == b"weights v2" and convert.calls == 2


def test_touched_but_identical_source_is_rehashed_not_reconverted(source: Path, tmp_path: Path) -> None:
    convert = Converter()
    target = convert_once(source, tmp_path / "out", convert)
    source.write_bytes(b"weights v1")  # same bytes, new mtime (e.g. a reinstall)
    os.utime(source, ns=(0, source.stat().st_mtime_ns + 1))
    assert is_converted(target, source)
    convert_once(source, target, convert)
    assert convert.calls == 1


def test_a_crash_mid_conversion_leaves_nothing_that_counts_as_done(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "out"

    def killed_halfway(src: Path, folder: Path) -> None:
        (folder / "copy.bin").write_bytes(b"half")
        raise KeyboardInterrupt  # as if Ctrl-C arrived while writing

    with pytest.raises(KeyboardInterrupt):
        convert_once(source, target, killed_halfway)
    assert not target.exists() and not is_converted(target, source)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["model.gguf"]

    convert_once(source, target, Converter())
    source.write_bytes(b"weights v2")
    with pytest.raises(KeyboardInterrupt):
        convert_once(source, target, killed_halfway)
    assert (target / "copy.bin").read_bytes() == b"weights v1", "the last finished conversion stays in place"
    assert not is_converted(target, source)


def test_folder_without_a_current_marker_is_converted_again(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "copy.bin").write_bytes(b"stale")
    # the marker lw-serve wrote before this cache existed: the source's size only
    (target / "lw-serve-conversion.json").write_text(json.dumps({"source": str(source), "size": 10}))
    assert not is_converted(target, source)
    convert_once(source, target, Converter())
    assert (target / "copy.bin").read_bytes() == b"weights v1"
    assert json.loads((target / MARKER).read_text())["sha256"] and not (target / "lw-serve-conversion.json").exists()
