"""Benchmark files: the real ones by path or folder, LW_DATA_DIR, and the pinned, checked first-use download."""

from __future__ import annotations

from pathlib import Path

import pytest
from lw_bench import DATASETS, BenchError, load_items
from lw_bench.data import dataset_path
from lw_core import DataFileError


def test_the_real_files_have_the_papers_sizes(data_dir: Path) -> None:
    full = load_items("longbench_write", data_dir=data_dir, download=False)
    assert len(full) == 120
    assert sum(i.language == "zh" for i in full) == 60  # by the lw-core script detector
    assert len(load_items("longbench_write_en", data_dir=data_dir, download=False)) == 60
    ruler = load_items("longwrite_ruler", data_dir=data_dir, download=False)
    assert len(ruler) == 48 and {i.dataset for i in ruler} == {"longwrite_ruler"}
    assert all(i.id and i.length >= 1 and i.type for i in full)
    assert len({i.id for i in full}) == 120


def test_a_path_is_used_as_is(data_dir: Path) -> None:
    items = load_items(data_dir / "longbench_write_en.jsonl", limit=3)
    assert len(items) == 3 and items[0].dataset == "longbench_write_en"


@pytest.fixture
def mirror(tmp_path: Path, data_dir: Path) -> Path:
    """A copy of the upstream repository's layout (``evaluation/<file>``), as a mirror of the pinned commit has."""
    folder = tmp_path / "mirror"
    (folder / "evaluation").mkdir(parents=True)
    for name in DATASETS.values():
        (folder / "evaluation" / name).write_bytes((data_dir / name).read_bytes())
    return folder


def test_without_a_folder_lw_data_dir_is_the_default_locator(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LW_DATA_DIR", str(data_dir.parent))
    assert dataset_path("longbench_write_en") == data_dir / "longbench_write_en.jsonl"
    assert len(load_items("longbench_write_en", download=False)) == 60


def test_pinned_download_into_the_cache_checked_by_sha256(
    tmp_path: Path, mirror: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LW_DATA_DIR", raising=False)
    monkeypatch.setenv("LW_HOME", str(tmp_path / "home"))
    items = load_items("longwrite_ruler", source_url=mirror.as_uri())
    cached = tmp_path / "home/data/longbench_write/longwrite_ruler.jsonl"
    assert len(items) == 48 and cached.read_bytes() == (mirror / "evaluation/longwrite_ruler.jsonl").read_bytes()
    (mirror / "evaluation/longwrite_ruler.jsonl").unlink()  # second use reads the cache, not the source
    assert len(load_items("longwrite_ruler", source_url=mirror.as_uri())) == 48


def test_a_download_that_is_not_the_pinned_file_is_refused_and_leaves_nothing(
    tmp_path: Path, mirror: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LW_DATA_DIR", raising=False)
    monkeypatch.setenv("LW_HOME", str(tmp_path / "home"))
    (mirror / "evaluation/longbench_write.jsonl").write_text('{"prompt": "edited upstream", "length": 10}\n')
    with pytest.raises(DataFileError, match="SHA-256"):
        load_items("longbench_write", source_url=mirror.as_uri())
    assert not (tmp_path / "home/data/longbench_write/longbench_write.jsonl").exists()


def test_an_explicit_folder_is_used_and_must_hold_the_file(tmp_path: Path, data_dir: Path) -> None:
    assert len(load_items("longbench_write_en", data_dir=data_dir)) == 60
    with pytest.raises(BenchError, match=r"longbench_write_en.jsonl does not exist: put .* in"):
        load_items("longbench_write_en", data_dir=tmp_path)


def test_unknown_names_and_no_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BenchError, match="neither a file nor a benchmark name"):
        load_items("longbench_writ")
    monkeypatch.setenv("LW_DATA_DIR", str(tmp_path))
    with pytest.raises(DataFileError, match="downloading is off"):
        load_items("longbench_write", download=False)


def test_duplicate_prompts_are_rejected_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    path.write_text('{"prompt": "a", "length": 10}\n{"prompt": "b", "length": 10}\n{"prompt": "a", "length": 20}\n')
    with pytest.raises(BenchError, match=r"dup.jsonl:3: duplicate prompt \(same id as line 1\)"):
        load_items(path)
