"""Training records from JSONL or parquet, validated with lw-core's schemas; errors name file:line and field."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from lw_core import PreferencePair, RecordError, SFTRecord, read_jsonl
from pydantic import BaseModel, ValidationError

from .errors import ConfigError

T = TypeVar("T", bound=BaseModel)

__all__ = ["read_pairs", "read_sft_records"]


def read_sft_records(path: Path, *, where: str = "data") -> list[SFTRecord]:
    """SFT records that each hold an assistant turn with text (else there is nothing to train on)."""
    records = _read(path, SFTRecord, where)
    for index, record in enumerate(records):
        if not any(m.role == "assistant" and m.content.strip() for m in record.messages):
            raise RecordError(
                str(path), _line(path, index), "messages", "no assistant message with text: nothing to train on"
            )
    return records


def read_pairs(path: Path, *, where: str = "data") -> list[PreferencePair]:
    """Preference pairs whose ``chosen`` and ``rejected`` each hold an assistant answer with text."""
    pairs = _read(path, PreferencePair, where)
    for index, pair in enumerate(pairs):
        for field in ("chosen", "rejected"):
            if not any(m.role == "assistant" and m.content.strip() for m in getattr(pair, field)):
                raise RecordError(str(path), _line(path, index), field, "needs an assistant message with text")
    return pairs


def _read(path: Path, schema: type[T], where: str) -> list[T]:
    if not path.is_file():
        raise ConfigError(f"{where}: data file {path} not found")
    if path.suffix == ".parquet":
        return _read_parquet(path, schema)
    records = list(read_jsonl(path, schema))
    if not records:
        raise ConfigError(f"{where}: {path} holds no records")
    return records


def _read_parquet(path: Path, schema: type[T]) -> list[T]:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    rows = pq.read_table(path).to_pylist()
    if not rows:
        raise ConfigError(f"{path}: holds no records")
    records = []
    for row_number, row in enumerate(rows, start=1):
        try:
            records.append(schema.model_validate(row))
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or None
            raise RecordError(f"{path} row", row_number, field, first["msg"]) from None
    return records


def _line(path: Path, index: int) -> int:
    """The file line of the ``index``-th record (JSONL skips blank lines; parquet rows count from 1)."""
    if path.suffix == ".parquet":
        return index + 1
    seen = -1
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                seen += 1
                if seen == index:
                    return number
    return index + 1
