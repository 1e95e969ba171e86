"""Benchmark files: the real ones by path, and the first-use download (file URL and local HTTP)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from lw_bench import DATASETS, BenchError, load_items
from lw_bench.data import dataset_path


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
    folder = tmp_path / "mirror"
    folder.mkdir()
    for name in DATASETS.values():
        (folder / name).write_bytes((data_dir / name).read_bytes())
    return folder


def test_download_from_a_file_url_into_the_cache(tmp_path: Path, mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LW_HOME", str(tmp_path / "home"))
    items = load_items("longwrite_ruler", source_url=mirror.as_uri())
    cached = tmp_path / "home/datasets/longbench_write/longwrite_ruler.jsonl"
    assert len(items) == 48 and cached.read_bytes() == (mirror / "longwrite_ruler.jsonl").read_bytes()
    (mirror / "longwrite_ruler.jsonl").unlink()  # second use reads the cache, not the source
    assert len(load_items("longwrite_ruler", source_url=mirror.as_uri())) == 48


@pytest.fixture
def http_mirror(mirror: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(mirror))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_over_http(tmp_path: Path, http_mirror: str) -> None:
    items = load_items("longbench_write_en", data_dir=tmp_path, source_url=http_mirror)
    assert len(items) == 60 and (tmp_path / "longbench_write_en.jsonl").is_file()


def test_a_failed_download_says_what_to_do_and_leaves_nothing(tmp_path: Path, http_mirror: str) -> None:
    with pytest.raises(BenchError, match=r"could not download .*404.*pass its path"):
        dataset_path("longbench_write", data_dir=tmp_path / "cache", source_url=http_mirror + "missing/")
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_a_download_that_is_not_the_benchmark_is_discarded(tmp_path: Path) -> None:
    fake = tmp_path / "src"
    fake.mkdir()
    (fake / "longbench_write.jsonl").write_text("<html>captive portal</html>\n")
    cache = tmp_path / "cache"
    with pytest.raises(Exception, match="invalid JSON"):
        dataset_path("longbench_write", data_dir=cache, source_url=fake.as_uri())
    assert not (cache / "longbench_write.jsonl").exists()


def test_unknown_names_and_no_download(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="neither a file nor a benchmark name"):
        load_items("longbench_writ")
    with pytest.raises(BenchError, match="downloading is off"):
        load_items("longbench_write", data_dir=tmp_path, download=False)


def test_duplicate_prompts_are_rejected_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    path.write_text('{"prompt": "a", "length": 10}\n{"prompt": "b", "length": 10}\n{"prompt": "a", "length": 20}\n')
    with pytest.raises(BenchError, match=r"dup.jsonl:3: duplicate prompt \(same id as line 1\)"):
        load_items(path)
