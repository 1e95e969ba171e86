"""Data files: found under LW_DATA_DIR, else downloaded pinned and checked by SHA-256."""

import hashlib
import shutil
from pathlib import Path

import pytest
from lw_core import DataFileError, data_file
from lw_core.data import DATA_FILES

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data beside the checkout")


@needs_shared
def test_the_shared_files_are_the_pinned_ones():
    for name, (_, sha256) in DATA_FILES.items():
        assert hashlib.sha256((SHARED / name).read_bytes()).hexdigest() == sha256, name


@needs_shared
def test_lw_data_dir_is_used_as_is(monkeypatch):
    monkeypatch.setenv("LW_DATA_DIR", str(SHARED))
    assert data_file("longwriter_prompts/judge.txt") == SHARED / "longwriter_prompts" / "judge.txt"


def _mirror(tmp_path: Path, name: str, content: bytes) -> str:
    upstream, _ = DATA_FILES[name]
    target = tmp_path / "mirror" / upstream
    target.parent.mkdir(parents=True)
    target.write_bytes(content)
    return (tmp_path / "mirror").as_uri()


@needs_shared
def test_a_missing_file_is_downloaded_and_checked(tmp_path, monkeypatch):
    monkeypatch.delenv("LW_DATA_DIR", raising=False)
    monkeypatch.setenv("LW_HOME", str(tmp_path / "home"))
    name = "longwriter_prompts/plan.txt"
    mirror = _mirror(tmp_path, name, (SHARED / name).read_bytes())
    path = data_file(name, source_url=mirror)
    assert path == tmp_path / "home" / "data" / name
    assert path.read_bytes() == (SHARED / name).read_bytes()
    shutil.rmtree(tmp_path / "mirror")
    assert data_file(name, source_url=mirror) == path  # cached: no second download


def test_a_download_with_another_checksum_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("LW_DATA_DIR", raising=False)
    monkeypatch.setenv("LW_HOME", str(tmp_path / "home"))
    name = "longwriter_prompts/judge.txt"
    mirror = _mirror(tmp_path, name, b"<html>a proxy's login page</html>")
    with pytest.raises(DataFileError, match="does not match the pinned"):
        data_file(name, source_url=mirror)
    assert not (tmp_path / "home" / "data" / name).exists()
    assert not list((tmp_path / "home").rglob("*.tmp"))


def test_unknown_names_and_no_download_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("LW_DATA_DIR", str(tmp_path))
    with pytest.raises(DataFileError, match=r"unknown data file 'x\.txt'; known: longbench_write/"):
        data_file("x.txt")
    with pytest.raises(DataFileError, match="downloading is off: set LW_DATA_DIR"):
        data_file("longwriter_prompts/write.txt", download=False)
