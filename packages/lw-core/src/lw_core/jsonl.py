"""JSONL files between stages: typed reads with file:line:field errors, crash-safe appends.

A run killed with ``kill -9`` can leave a torn last line. Readers skip it with a warning; the
next :class:`JsonlWriter` on that file cuts it off before appending, so no record is ever glued
onto a fragment. Finished records are never rewritten.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from lw_core.errors import RecordError

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)
OnInvalid = Literal["raise", "skip"]
_TAIL_BLOCK = 1 << 16


def _field(err: ValidationError) -> tuple[str | None, str]:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or None
    return loc, first["msg"]


def _dump(record: BaseModel | dict[str, Any]) -> str:
    if isinstance(record, BaseModel):
        return record.model_dump_json()
    return json.dumps(record, ensure_ascii=False)


def read_jsonl(
    path: str | os.PathLike[str],
    schema: type[T],
    *,
    on_invalid: OnInvalid = "raise",
    rejects: str | os.PathLike[str] | None = None,
) -> Iterator[T]:
    """Yield each line of ``path`` validated as ``schema``.

    Invalid lines raise :class:`RecordError` naming ``file:line`` and the field, or with
    ``on_invalid="skip"`` are logged and appended to ``rejects`` (if given) with the reason.
    A torn last line (no newline, not JSON) is skipped with a warning either way.
    """
    path = Path(path)
    reject_writer = JsonlWriter(rejects) if rejects is not None else None
    try:
        with path.open("rb") as fh:  # line by line: memory is bounded by the longest line, not the file
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    data = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    if not raw.endswith(b"\n"):  # the last line, unfinished: a write interrupted mid-line
                        log.warning("%s:%d: skipping torn last line (interrupted write)", path, lineno)
                        continue
                    error = RecordError(str(path), lineno, None, f"invalid JSON: {exc}")
                    if on_invalid == "raise":
                        raise error from None
                    _reject(reject_writer, raw, error)
                    continue
                try:
                    yield schema.model_validate(data)
                except ValidationError as exc:
                    field, msg = _field(exc)
                    error = RecordError(str(path), lineno, field, msg)
                    if on_invalid == "raise":
                        raise error from None
                    _reject(reject_writer, raw, error)
    finally:
        if reject_writer is not None:
            reject_writer.close()


def _reject(writer: JsonlWriter | None, raw: bytes, error: RecordError) -> None:
    log.warning("skipping invalid record: %s", error)
    if writer is not None:
        writer.write({"line": error.line, "error": str(error), "raw": raw.decode("utf-8", "replace").rstrip("\r\n")})


class JsonlWriter:
    """Append-only JSONL writer: one flushed line per record, safe against kill -9.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
    >>> with JsonlWriter(p) as w:
    ...     w.write({"a": 1})
    >>> p.read_text()
    '{"a": 1}\\n'
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._cut_torn_tail()
        self._fh: IO[str] | None = self.path.open("a", encoding="utf-8")
        self._fsync = fsync

    def _cut_torn_tail(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb+") as fh:
            end = fh.seek(0, os.SEEK_END)
            fh.seek(end - 1)
            if fh.read(1) == b"\n":
                return
            keep = end
            while keep > 0:  # find the last newline, reading backwards block by block (files can be huge)
                start = max(0, keep - _TAIL_BLOCK)
                fh.seek(start)
                block = fh.read(keep - start)
                newline = block.rfind(b"\n")
                if newline >= 0:
                    keep = start + newline + 1
                    break
                keep = start
            log.warning("%s: dropping torn last line (%d bytes) before appending", self.path, end - keep)
            fh.truncate(keep)

    def write(self, record: BaseModel | dict[str, Any]) -> None:
        if self._fh is None:
            raise ValueError(f"{self.path}: writer is closed")
        self._fh.write(_dump(record) + "\n")
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())

    def write_many(self, records: Iterable[BaseModel | dict[str, Any]]) -> None:
        for record in records:
            self.write(record)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_jsonl(path: str | os.PathLike[str], records: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write a whole file atomically (temp file + rename): readers never see half of it."""
    count = 0

    def lines() -> Iterator[str]:
        nonlocal count
        for record in records:
            count += 1
            yield _dump(record) + "\n"

    atomic_write(path, lines())
    return count


def atomic_write(path: str | os.PathLike[str], content: str | bytes | Iterable[str]) -> None:
    """Replace ``path`` with ``content`` so that it is either the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if isinstance(content, bytes):
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(content) if isinstance(content, str) else fh.writelines(content)
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
