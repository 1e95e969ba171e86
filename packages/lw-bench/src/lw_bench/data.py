"""The three benchmark files: load from a path, or download once from the paper's repository.

The files are the public ``evaluation/*.jsonl`` of THUDM/LongWriter (``prompt``, ``type``, ``length``
per line). They are never vendored: a path is used as is; a name is resolved in ``data_dir`` (or the
lw cache) and downloaded there on first use, atomically, so an interrupted download leaves nothing.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from lw_core import BenchItem, atomic_write, cache_dir, read_jsonl

from lw_bench.errors import BenchError

log = logging.getLogger(__name__)

#: Benchmark name -> file name in the paper's repository.
DATASETS: dict[str, str] = {
    "longbench_write": "longbench_write.jsonl",
    "longbench_write_en": "longbench_write_en.jsonl",
    "longwrite_ruler": "longwrite_ruler.jsonl",
}
SOURCE_URL = "https://raw.githubusercontent.com/THUDM/LongWriter/main/evaluation/"


def dataset_path(
    name_or_path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    source_url: str = SOURCE_URL,
    download: bool = True,
) -> Path:
    """The local file of a benchmark: ``name_or_path`` if it is a file, else the named set (downloaded if absent).

    ``source_url`` may be any URL ``urllib`` opens (``https://``, ``file://``), e.g. a mirror.
    """
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    name = str(name_or_path)
    if name not in DATASETS:
        raise BenchError(
            f"{name!r} is neither a file nor a benchmark name; use a path to a JSONL file or one of {sorted(DATASETS)}"
        )
    folder = Path(data_dir) if data_dir is not None else cache_dir("datasets", "longbench_write")
    path = folder / DATASETS[name]
    if path.is_file():
        return path
    if not download:
        raise BenchError(f"{path} does not exist and downloading is off; pass a path or allow the download")
    url = source_url.rstrip("/") + "/" + DATASETS[name]
    log.info("downloading %s to %s", url, path)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            content = response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise BenchError(
            f"could not download {url}: {exc}; download it by hand and pass its path, or set --data-dir"
        ) from exc
    atomic_write(path, content)
    # Validate before anyone relies on it: a proxy's HTML page must not become "the benchmark".
    try:
        _ = [*read_jsonl(path, BenchItem)]
    except Exception:
        path.unlink(missing_ok=True)
        raise
    return path


def load_items(
    name_or_path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    source_url: str = SOURCE_URL,
    download: bool = True,
    limit: int | None = None,
) -> list[BenchItem]:
    """Benchmark items from a path or a name in :data:`DATASETS`, tagged with the dataset's name."""
    path = dataset_path(name_or_path, data_dir=data_dir, source_url=source_url, download=download)
    dataset = str(name_or_path) if str(name_or_path) in DATASETS else path.stem
    items = [item.model_copy(update={"dataset": item.dataset or dataset}) for item in read_jsonl(path, BenchItem)]
    ids: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.id in ids:
            raise BenchError(f"{path}:{index + 1}: duplicate prompt (same id as line {ids[item.id] + 1})")
        ids[item.id] = index
    return items[:limit] if limit is not None else items
