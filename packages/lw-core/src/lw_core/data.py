"""The public data lw evaluates and prompts with: LongBench-Write, LongWrite-Ruler and the paper's prompt files.

These files are data, never copied into the source. :func:`data_file` finds one under ``$LW_DATA_DIR`` (dev
machines and CI: ``../shared/data``), else in the lw cache, where it is downloaded on first use from the paper's
repository **pinned to one commit** and checked against its SHA-256, so every user scores and prompts with
byte-identical files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from lw_core.errors import LWError
from lw_core.jsonl import atomic_write
from lw_core.paths import cache_dir

log = logging.getLogger(__name__)

#: THUDM/LongWriter commit that every data file is pinned to (2024-09-27).
UPSTREAM_COMMIT = "3fcfdff43deceb49f7936c6bf25ad88d61df0bfa"
UPSTREAM_URL = f"https://raw.githubusercontent.com/THUDM/LongWriter/{UPSTREAM_COMMIT}/"


class DataFileError(LWError):
    """A data file is unknown, cannot be downloaded, or does not match its pinned checksum."""


#: file (relative to the data folder) -> (path in the upstream repository, SHA-256)
DATA_FILES: dict[str, tuple[str, str]] = {
    "longbench_write/longbench_write.jsonl": (
        "evaluation/longbench_write.jsonl",
        "1f6e99497cc24d65894d65e014062f398ba946ebdd254b7f8b339e48d3ab5779",
    ),
    "longbench_write/longbench_write_en.jsonl": (
        "evaluation/longbench_write_en.jsonl",
        "87800927761f340e48899e4df5d47fb7211ad4936a63420dbfa979660414259f",
    ),
    "longbench_write/longwrite_ruler.jsonl": (
        "evaluation/longwrite_ruler.jsonl",
        "a1d4ebf0df0fa1600567691d11c9a52de3037c4a372970ed2e8f52f2889e0a62",
    ),
    "longwriter_prompts/plan.txt": (
        "agentwrite/prompts/plan.txt",
        "cf65adef21e8f2565bf4f633b169a90681fbdee0efd026e577278f83784f6d52",
    ),
    "longwriter_prompts/write.txt": (
        "agentwrite/prompts/write.txt",
        "468c47ca954a4dcd4295642ee036383f3fb741560b2fa707a6039f10be0c3c9a",
    ),
    "longwriter_prompts/judge.txt": (
        "evaluation/judge.txt",
        "2c423ce88a0eb6a61482f427997a3c03c4bc11fe861102895dcac45926ae1d57",
    ),
}


def data_dir() -> Path:
    """``$LW_DATA_DIR`` if set (read at call time), else ``$LW_HOME/data`` (filled by downloads)."""
    configured = os.environ.get("LW_DATA_DIR")
    return Path(configured).expanduser() if configured else cache_dir("data")


def data_file(name: str, *, download: bool = True, source_url: str = UPSTREAM_URL) -> Path:
    """The local path of a pinned data file, e.g. ``data_file("longwriter_prompts/judge.txt")``.

    Looked up in :func:`data_dir`; a missing file is downloaded (``source_url`` may be a mirror, ``file://``
    included) and kept only if its SHA-256 matches the pinned one. Files already on disk are trusted as they are,
    so a user may point ``LW_DATA_DIR`` at edited copies.

    >>> sorted(DATA_FILES)[-1]
    'longwriter_prompts/write.txt'
    """
    if name not in DATA_FILES:
        known = ", ".join(sorted(DATA_FILES))
        raise DataFileError(f"unknown data file {name!r}; known: {known}")
    path = data_dir() / name
    if path.is_file():
        return path
    if not download:
        raise DataFileError(f"{path} does not exist and downloading is off: set LW_DATA_DIR to a folder holding it")
    upstream, sha256 = DATA_FILES[name]
    url = source_url.rstrip("/") + "/" + upstream
    log.info("downloading %s to %s", url, path)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            content = response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise DataFileError(
            f"could not download {url}: {exc}; fetch it by hand into {path}, or set LW_DATA_DIR to a folder holding "
            f"{name}"
        ) from exc
    digest = hashlib.sha256(content).hexdigest()
    if digest != sha256:
        raise DataFileError(
            f"{url}: SHA-256 {digest} does not match the pinned {sha256} (commit {UPSTREAM_COMMIT}); nothing was "
            "written. A proxy page or a changed mirror gives this; use the upstream repository or LW_DATA_DIR"
        )
    atomic_write(path, content)
    return path
