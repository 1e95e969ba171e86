"""Writing instructions: load, normalise, dedupe, tag language and requested length, select."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from lw_core import stable_id

from lw_data._text import language, normalize
from lw_data.errors import DataError
from lw_data.lengths import fill_lengths

PROMPT_COLUMNS = ("prompt", "instruction", "query", "question", "input")


def prepare_instructions(frame: pl.DataFrame, *, source: str = "input") -> tuple[pl.DataFrame, pl.DataFrame]:
    """Normalise a table of prompts into lw-core ``Instruction`` rows; return ``(kept, dropped)``.

    The prompt column may be called prompt/instruction/query/question/input, or be the first user turn of a
    ``messages`` column. Whitespace is trimmed; ``language`` (en/zh; other values are re-detected) and ``length``
    are filled where missing (a length given in the file wins over one read from the text). Duplicates are
    dropped, first occurrence kept: ``exact duplicate`` (same trimmed text) and ``near duplicate`` (same text
    after NFKC, lower-casing and removing punctuation and extra spaces). ``dropped`` has ``prompt`` and ``reason``.
    """
    prompt = _prompt_column(frame, source)
    frame = frame.with_columns(prompt=prompt.str.strip_chars())
    for column, dtype in (("length", pl.Int64), ("language", pl.String), ("type", pl.String), ("id", pl.String)):
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(column))
    frame = frame.with_columns(
        pl.col("length").cast(pl.Int64, strict=False),
        pl.col("type", "id", "language").cast(pl.String),
    )
    known = pl.col("language").str.to_lowercase()
    frame = frame.with_columns(
        length=fill_lengths(frame["length"], frame["prompt"]),
        language=pl.when(known.is_in(["en", "zh"])).then(known).otherwise(language(pl.col("prompt"))),
        _norm=normalize(pl.col("prompt")),
    ).with_row_index("_row")
    reason = (
        pl.when(pl.col("prompt").is_null() | (pl.col("prompt") == ""))
        .then(pl.lit("empty prompt"))
        .when(~pl.col("prompt").is_first_distinct())
        .then(pl.lit("exact duplicate"))
        .when(~pl.col("_norm").is_first_distinct())
        .then(pl.lit("near duplicate"))
    )
    frame = frame.with_columns(reason=reason)
    dropped = frame.filter(pl.col("reason").is_not_null()).select("prompt", "reason")
    kept = frame.filter(pl.col("reason").is_null())
    ids = pl.when(pl.col("id").is_null() | (pl.col("id") == "")).then(
        pl.col("prompt").map_elements(stable_id, return_dtype=pl.String)
    )
    kept = kept.select(
        id=ids.otherwise(pl.col("id")), prompt="prompt", length="length", language="language", type="type"
    )
    return kept, dropped


def _prompt_column(frame: pl.DataFrame, source: str) -> pl.Expr:
    for name in PROMPT_COLUMNS:
        if name in frame.columns and frame.schema[name] == pl.String:
            return pl.col(name)
    if "messages" in frame.columns:
        user = pl.element().struct.field("role") == "user"
        return pl.col("messages").list.eval(pl.element().filter(user)).list.first().struct.field("content")
    raise DataError(
        f"{source}: no prompt column; expected one of {', '.join(PROMPT_COLUMNS)} or 'messages' "
        f"(columns: {', '.join(frame.columns)})"
    )


def select_instructions(
    frame: pl.DataFrame,
    *,
    min_length: int | None = None,
    max_length: int | None = None,
    languages: Sequence[str] = (),
    types: Sequence[str] = (),
    require_length: bool = False,
    n: int | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """Instructions within a requested-length range, of the given languages/types, then ``n`` sampled with ``seed``.

    Rows without a requested length pass the range test unless ``require_length``; sampling is without
    replacement and keeps the file's order among the chosen rows (so diffs between selections stay readable).
    """
    keep = pl.lit(True)
    length = pl.col("length")
    if require_length:
        keep &= length.is_not_null()
    if min_length is not None:
        keep &= length.is_null() | (length >= min_length)
    if max_length is not None:
        keep &= length.is_null() | (length <= max_length)
    if languages:
        keep &= pl.col("language").is_in(list(languages))
    if types:
        keep &= pl.col("type").is_in(list(types))
    chosen = frame.filter(keep)
    if n is not None and n < chosen.height:
        rows = chosen.with_row_index("_i").sample(n, seed=seed)["_i"].sort()
        chosen = chosen[rows]
    return chosen
