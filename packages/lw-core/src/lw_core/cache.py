"""Convert-once caches keyed by content: a folder made from a source file, remade when the file's bytes change.

A retrained model can keep its file size, so the source's size alone cannot say whether a cached folder is stale;
its SHA-256 can. The hash is streamed, and remembered in the marker beside the file's size and mtime, so an
unchanged source is not read again on every call. The folder is built in a temporary sibling and renamed into
place with the marker written last: a conversion killed halfway never leaves a folder that counts as done.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> source = root / "model.bin"
>>> _ = source.write_bytes(b"weights v1")
>>> def convert(src: Path, folder: Path) -> None:
...     print("converting")
...     _ = (folder / "copy.bin").write_bytes(src.read_bytes())
>>> target = convert_once(source, root / "converted", convert)
converting
>>> _ = convert_once(source, target, convert)  # unchanged: reused
>>> _ = source.write_bytes(b"weights v2")  # same size, new bytes
>>> (convert_once(source, target, convert) / "copy.bin").read_bytes()
converting
b'weights v2'
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: The marker's name; lw-serve's and lw-train's conversions of the same model share one folder through it.
MARKER = "lw-conversion.json"

__all__ = ["MARKER", "convert_once", "is_converted", "locked"]


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Serialise a one-time conversion across processes, so parallel jobs convert once, not twice."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_converted(folder: Path, source: Path) -> bool:
    """True when ``folder`` holds a finished conversion of ``source`` as its bytes are now."""
    recorded = _recorded(folder)
    if recorded is None:
        return False
    current = _fingerprint(source, recorded)
    return all(recorded.get(key) == current[key] for key in ("size", "sha256"))  # path and mtime may change


def convert_once(source: Path, target: Path, convert: Callable[[Path, Path], None]) -> Path:
    """``target``, made by ``convert(source, folder)`` unless it already holds a conversion of ``source``'s bytes.

    ``convert`` writes into the empty folder it is given; whatever it raises propagates, and its half-written
    folder is removed. Concurrent callers wait on a lock beside ``target`` and then reuse the result.
    """
    if is_converted(target, source):
        return target
    with locked(target.parent / f".{target.name}.lock"):
        if is_converted(target, source):
            return target
        log.info("converting %s into %s (once per content)", source, target)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
        try:
            convert(source, tmp)
            (tmp / MARKER).write_text(json.dumps(_fingerprint(source, None)))
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _recorded(folder: Path) -> dict[str, object] | None:
    try:
        recorded = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None  # no marker (never finished, or an older marker's name): convert again
    return recorded if isinstance(recorded, dict) else None


def _fingerprint(source: Path, recorded: dict[str, object] | None) -> dict[str, object]:
    """Path, size, mtime and SHA-256 of ``source``; the hash is reused from ``recorded`` when the rest matches."""
    stat = source.stat()
    fingerprint: dict[str, object] = {"source": str(source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    known = recorded.get("sha256") if recorded else None
    if recorded and isinstance(known, str) and all(recorded.get(key) == value for key, value in fingerprint.items()):
        return {**fingerprint, "sha256": known}
    digest = hashlib.sha256()
    with open(source, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    fingerprint["sha256"] = digest.hexdigest()
    return fingerprint
