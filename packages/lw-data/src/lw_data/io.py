"""Reading and writing tables: JSONL, parquet, CSV and HF datasets, with file:line errors and atomic writes."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import polars as pl
from lw_core import RecordError, stable_id
from lw_core.text import count_words_series

from lw_data._text import language
from lw_data.errors import DataError

log = logging.getLogger(__name__)

JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
LONGWRITER_6K = "THUDM/LongWriter-6k"


def iter_jsonl_batches(
    path: str | os.PathLike[str], schema: dict[str, pl.DataType] | None = None, *, batch_rows: int = 10_000
) -> Iterator[pl.DataFrame]:
    """Parse a JSONL file in frames of ``batch_rows`` lines, so memory stays bounded on big files.

    ``schema`` keeps only the named fields (the rest are ignored, as lw-core records ignore unknown fields).
    A line that is not JSON raises :class:`RecordError` with ``file:line``; a torn last line (a write that was
    interrupted) is skipped with a warning, as lw-core's readers do. Each frame has a ``_line`` column.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    with path.open("rb") as fh:
        first_line, lines = 1, []
        for lineno, raw in enumerate(fh, start=1):
            lines.append(raw)
            if len(lines) >= batch_rows:
                yield _parse_batch(path, first_line, lines, schema, last=False)
                first_line, lines = lineno + 1, []
        if lines:
            yield _parse_batch(path, first_line, lines, schema, last=True)


def _parse_batch(
    path: Path, first_line: int, lines: list[bytes], schema: dict[str, pl.DataType] | None, *, last: bool
) -> pl.DataFrame:
    numbered = [(first_line + i, raw) for i, raw in enumerate(lines) if not raw.isspace()]  # as polars skips
    try:
        frame = _read_lines([raw for _, raw in numbered], schema)
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError) as exc:
        numbered = _drop_torn_or_raise(path, numbered, schema, last, exc)
        frame = _read_lines([raw for _, raw in numbered], schema)
    return frame.with_columns(_line=pl.Series([n for n, _ in numbered], dtype=pl.Int64))


def _read_lines(lines: list[bytes], schema: dict[str, pl.DataType] | None) -> pl.DataFrame:
    if not lines:
        return pl.DataFrame(schema=schema)
    data = b"".join(raw if raw.endswith(b"\n") else raw + b"\n" for raw in lines)
    # without a schema, every line decides it: a field first seen after line 100 (polars' default) would be lost
    return pl.read_ndjson(data, schema=schema, infer_schema_length=None)


def _drop_torn_or_raise(
    path: Path,
    numbered: list[tuple[int, bytes]],
    schema: dict[str, pl.DataType] | None,
    last: bool,
    exc: Exception,
) -> list[tuple[int, bytes]]:
    for i, (lineno, raw) in enumerate(numbered):
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            if last and i == len(numbered) - 1 and not raw.endswith(b"\n"):
                log.warning("%s:%d: skipping torn last line (interrupted write)", path, lineno)
                return numbered[:-1]
            raise RecordError(str(path), lineno, None, f"invalid JSON: {err}") from None
        if not isinstance(value, dict):
            raise RecordError(str(path), lineno, None, f"expected a JSON object, got {type(value).__name__}")
    for lineno, raw in numbered:  # every line is a JSON object: find the one whose field has the wrong type
        try:
            _read_lines([raw], schema)
        except (pl.exceptions.ComputeError, pl.exceptions.SchemaError) as err:
            field = next((k for k in schema or {} if _fails(raw, {k: schema[k]})), None) if schema else None
            message = str(err).splitlines()[0]
            raise RecordError(str(path), lineno, field, f"wrong type ({message}); expected {schema}") from None
    raise RecordError(str(path), numbered[0][0], None, f"cannot read these lines as a table: {exc}")


def _fails(raw: bytes, schema: dict[str, pl.DataType]) -> bool:
    try:
        _read_lines([raw], schema)
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError):
        return True
    return False


def read_table(path: str | os.PathLike[str], schema: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
    """One table from JSONL, parquet, CSV/TSV, or a folder written by ``datasets.Dataset.save_to_disk``."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if path.is_dir():
        frame = _read_hf_folder(path)
    elif suffix in JSONL_SUFFIXES:
        batches = list(iter_jsonl_batches(path, schema, batch_rows=100_000))
        frame = pl.concat(batches, how="diagonal_relaxed") if batches else pl.DataFrame(schema=schema)
        return frame.drop("_line") if "_line" in frame.columns else frame
    elif suffix == ".parquet":
        frame = pl.read_parquet(path)
    elif suffix in {".csv", ".tsv"}:
        frame = pl.read_csv(path, separator="\t" if suffix == ".tsv" else ",", infer_schema_length=10_000)
    else:
        raise DataError(f"{path}: unknown format '{suffix}'; use .jsonl, .parquet, .csv or a datasets folder")
    if schema:
        missing = [c for c in schema if c not in frame.columns]
        frame = frame.with_columns(pl.lit(None, dtype=schema[c]).alias(c) for c in missing)
    return frame


def _read_hf_folder(path: Path) -> pl.DataFrame:
    if not (path / "dataset_info.json").exists() and not (path / "dataset_dict.json").exists():
        shards = sorted(p for p in path.iterdir() if p.suffix.lower() in JSONL_SUFFIXES | {".parquet"})
        if not shards:
            raise DataError(f"{path}: folder holds no .jsonl/.parquet shards and is not a saved HF dataset")
        return pl.concat([read_table(p) for p in shards], how="diagonal_relaxed")
    try:
        import datasets  # type: ignore[import-untyped]
    except ImportError:
        raise DataError(f"{path}: is a saved HF dataset; install `lw-data[hf]` to read it") from None
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
    return pl.from_arrow(loaded.data.table)  # type: ignore[return-value]


def write_table(frame: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` as JSONL or parquet (by suffix), atomically: readers see the old file or the new one."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in JSONL_SUFFIXES | {".parquet"}:
        raise DataError(f"{path}: cannot write '{suffix}'; use .jsonl or .parquet")
    with AtomicFile(path) as fh:
        frame.write_parquet(fh) if suffix == ".parquet" else frame.write_ndjson(fh)
    return path


class AtomicFile:
    """A binary file written under a temporary name and renamed into place only when the block succeeds.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
    >>> with AtomicFile(p) as fh:
    ...     _ = fh.write(b'{"a": 1}\\n')
    >>> p.read_text()
    '{"a": 1}\\n'
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._tmp: Path | None = None
        self._fh: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self._tmp, self._fh = Path(tmp), os.fdopen(fd, "wb")
        return self._fh

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        assert self._fh is not None and self._tmp is not None
        try:
            if exc_type is None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            self._fh.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        finally:
            self._tmp.unlink(missing_ok=True)


def to_dataset(frame: pl.DataFrame) -> Any:
    """A HF ``datasets.Dataset`` with the frame's rows (nested messages stay lists of dicts)."""
    try:
        import datasets
    except ImportError:
        raise DataError("exporting a HF dataset needs `datasets`: pip install 'lw-data[hf]'") from None
    return datasets.Dataset(frame.to_arrow())


def load_longwriter6k(source: str | os.PathLike[str] | None = None) -> pl.DataFrame:
    """LongWriter-6k as an SFT frame (``id``, ``messages``, ``language``, ``words``).

    ``source`` is a local copy (the dataset's JSONL/parquet file or a folder of them); None downloads
    ``THUDM/LongWriter-6k`` from the HF hub with ``datasets`` (needs a network and ``lw-data[hf]``).
    """
    if source is not None:
        frame = read_table(source)
    else:
        try:
            import datasets
        except ImportError:
            raise DataError("downloading LongWriter-6k needs `datasets`: pip install 'lw-data[hf]'") from None
        try:
            loaded = datasets.load_dataset(LONGWRITER_6K, split="train")
        except Exception as exc:  # network, auth, hub errors all mean the same to the user
            raise DataError(
                f"could not download {LONGWRITER_6K} from the HF hub ({exc}); download it elsewhere and pass the path"
            ) from exc
        frame = pl.from_arrow(loaded.data.table)  # type: ignore[assignment]
    return sft_frame_from_messages(frame, source=str(source or LONGWRITER_6K))


def sft_frame_from_messages(frame: pl.DataFrame, *, source: str) -> pl.DataFrame:
    """Normalise a table of chats (``messages`` lists) into lw-data's SFT frame, dropping unusable rows."""
    if "messages" not in frame.columns:
        raise DataError(f"{source}: no 'messages' column (columns: {', '.join(frame.columns)})")
    msg = pl.col("messages")
    frame = frame.filter(msg.list.len() >= 2)
    prompt = msg.list.eval(pl.element().filter(pl.element().struct.field("role") == "user")).list.first()
    answer = msg.list.eval(pl.element().filter(pl.element().struct.field("role") == "assistant")).list.last()
    frame = frame.with_columns(
        _prompt=prompt.struct.field("content"), _answer=answer.struct.field("content")
    ).drop_nulls(["_prompt", "_answer"])
    ids = frame["id"] if "id" in frame.columns else frame["_prompt"].map_elements(stable_id, return_dtype=pl.String)
    return frame.select(
        id=ids,
        messages=msg.list.eval(
            pl.struct(role=pl.element().struct.field("role"), content=pl.element().struct.field("content"))
        ),
        language=language(pl.col("_prompt")),
        words=count_words_series(frame["_answer"]),
    )
