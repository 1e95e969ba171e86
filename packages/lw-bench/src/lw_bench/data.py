"""The three benchmark files: from a path, a folder of your own, or ``lw_core.data_file`` (pinned and checked).

The files are the public ``evaluation/*.jsonl`` of THUDM/LongWriter (``prompt``, ``type``, ``length`` per line).
They are never vendored: a path is used as is; a name is looked up in ``data_dir`` when one is given (the old
bench-data setting: ``--data-dir``, ``LW_BENCH_DATA_DIR`` in the apps), else by :func:`lw_core.data_file`:
``$LW_DATA_DIR/longbench_write/``, else the lw cache, filled by a download pinned to the upstream commit and
checked by SHA-256.
"""

from __future__ import annotations

import os
from pathlib import Path

from lw_core import BenchItem, data_file, read_jsonl
from lw_core.data import UPSTREAM_URL

from lw_bench.errors import BenchError

#: Benchmark name -> file name in the paper's repository.
DATASETS: dict[str, str] = {
    "longbench_write": "longbench_write.jsonl",
    "longbench_write_en": "longbench_write_en.jsonl",
    "longwrite_ruler": "longwrite_ruler.jsonl",
}
#: Where named sets are downloaded from: the paper's repository at the pinned commit (a mirror keeps its layout).
SOURCE_URL = UPSTREAM_URL


def dataset_path(
    name_or_path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    source_url: str = SOURCE_URL,
    download: bool = True,
) -> Path:
    """The local file of a benchmark: ``name_or_path`` if it is a file, else the named set.

    With ``data_dir`` the file must be in that folder. Without it, :func:`lw_core.data_file` finds it
    (``$LW_DATA_DIR``, else the lw cache, downloading it from ``source_url`` on first use and checking its SHA-256).
    """
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    name = str(name_or_path)
    if name not in DATASETS:
        raise BenchError(
            f"{name!r} is neither a file nor a benchmark name; use a path to a JSONL file or one of {sorted(DATASETS)}"
        )
    if data_dir is not None:
        path = Path(data_dir) / DATASETS[name]
        if not path.is_file():
            raise BenchError(
                f"{path} does not exist: put {DATASETS[name]} in {data_dir}, or leave the data folder unset to use "
                "LW_DATA_DIR or the pinned download"
            )
        return path
    return data_file(f"longbench_write/{DATASETS[name]}", download=download, source_url=source_url)


def load_items(
    name_or_path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    source_url: str = SOURCE_URL,
    download: bool = True,
    limit: int | None = None,
) -> list[BenchItem]:
    """Benchmark items from a path or a name in :data:`DATASETS`, tagged with the dataset's name.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "mine.jsonl"
    >>> _ = path.write_text('{"prompt": "Write a 300-word poem about rain", "length": 300}\\n')
    >>> [(item.length, item.language, item.dataset) for item in load_items(path)]
    [(300, 'en', 'mine')]
    """
    path = dataset_path(name_or_path, data_dir=data_dir, source_url=source_url, download=download)
    dataset = str(name_or_path) if str(name_or_path) in DATASETS else path.stem
    items = [item.model_copy(update={"dataset": item.dataset or dataset}) for item in read_jsonl(path, BenchItem)]
    ids: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.id in ids:
            raise BenchError(f"{path}:{index + 1}: duplicate prompt (same id as line {ids[item.id] + 1})")
        ids[item.id] = index
    return items[:limit] if limit is not None else items
