"""What a data set looks like: counts and output lengths per language and type, as a table and a PNG."""

from __future__ import annotations

import io
import os
from pathlib import Path

import polars as pl
from lw_core.text import count_words_series

from lw_data._text import language
from lw_data.errors import DataError
from lw_data.io import AtomicFile


def measures(frame: pl.DataFrame) -> pl.DataFrame:
    """``language``, ``type``, ``words``, ``requested`` per row of an SFT frame (from ``meta`` when present).

    Rows whose meta lacks a value get it measured: words of the last assistant turn, language of the first user
    turn; ``requested`` stays null where unknown.
    """
    if {"words", "language"} <= set(frame.columns) and "messages" not in frame.columns:
        base = frame
    else:
        if "messages" not in frame.columns:
            raise DataError(f"no 'messages' column to measure (columns: {', '.join(frame.columns)})")
        meta = frame["meta"].struct.unnest() if "meta" in frame.columns and frame["meta"].dtype == pl.Struct else None
        role = pl.element().struct.field("role")
        answer = pl.col("messages").list.eval(pl.element().filter(role == "assistant")).list.last()
        user = pl.col("messages").list.eval(pl.element().filter(role == "user")).list.first()
        texts = frame.select(a=answer.struct.field("content").fill_null(""), u=user.struct.field("content"))
        base = meta if meta is not None else pl.DataFrame({"words": pl.Series([None] * frame.height, dtype=pl.Int64)})
        if "words" not in base.columns or base["words"].null_count():
            known = base["words"] if "words" in base.columns else None
            counted = count_words_series(texts["a"])
            base = base.with_columns(words=counted if known is None else known.fill_null(counted))
        guessed = texts.select(language(pl.col("u"))).to_series()
        has_language = "language" in base.columns
        base = base.with_columns(language=base["language"].fill_null(guessed) if has_language else guessed)
    for column, dtype in (("type", pl.String), ("requested", pl.Int64)):
        if column not in base.columns:
            base = base.with_columns(pl.lit(None, dtype=dtype).alias(column))
    return base.select(
        pl.col("language").fill_null("?"),
        pl.col("type").cast(pl.String).fill_null("-"),
        pl.col("words").cast(pl.Int64),
        pl.col("requested").cast(pl.Int64),
    )


def summarize(m: pl.DataFrame) -> pl.DataFrame:
    """Per language and type, and overall: rows, output words (mean, p10, median, p90, max), mean length ratio."""

    def agg(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.select(
            rows=pl.len(),
            mean_words=pl.col("words").mean().round(0),
            p10=pl.col("words").quantile(0.1, "nearest"),
            median=pl.col("words").median(),
            p90=pl.col("words").quantile(0.9, "nearest"),
            max=pl.col("words").max(),
            with_request=pl.col("requested").count(),
            mean_ratio=(pl.col("words") / pl.col("requested")).mean().round(3),
        )

    parts = [
        group.pipe(agg).with_columns(language=pl.lit(lang), type=pl.lit(kind))
        for (lang, kind), group in m.group_by("language", "type", maintain_order=True)
    ]
    parts.append(agg(m).with_columns(language=pl.lit("all"), type=pl.lit("all")))
    table = pl.concat(parts, how="vertical_relaxed")
    return table.select("language", "type", pl.exclude("language", "type")).sort(
        pl.col("language") == "all", "language", "type"
    )


def plot(m: pl.DataFrame, path: str | os.PathLike[str], *, title: str = "lw-data") -> Path:
    """Save a PNG: histogram of output lengths per language, and output vs requested length (log scales)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # not pyplot: the caller's backend and figure list stay untouched

    fig = Figure(figsize=(12, 4.5))
    FigureCanvasAgg(fig)
    hist, scatter = fig.subplots(1, 2)
    top = max(int(m.select(pl.col("words").max()).item() or 1), 10)
    bins = np.logspace(0, np.log10(top * 1.1), 40)
    for lang, group in m.group_by("language", maintain_order=True):
        words = group["words"].to_numpy()
        hist.hist(words[words > 0], bins=bins, alpha=0.6, label=f"{lang[0]} (n={group.height})")
        known = group.filter(pl.col("requested").is_not_null() & (pl.col("words") > 0))
        if known.height:
            scatter.scatter(known["requested"], known["words"], s=6, alpha=0.5, label=lang[0])
    hist.set(xscale="log", xlabel="output length (words; characters for zh)", ylabel="rows", title="Output length")
    hist.legend()
    known = m.filter(pl.col("requested").is_not_null() & (pl.col("words") > 0))
    if known.height:
        lo = max(1, int(known.select(pl.min_horizontal(pl.col("requested", "words").min())).item()))
        hi = int(known.select(pl.max_horizontal(pl.col("requested", "words").max())).item())
        scatter.plot([lo, hi], [lo, hi], "k--", lw=1, label="as requested")
        scatter.set(xscale="log", yscale="log")
        scatter.legend()
    scatter.set(xlabel="requested length", ylabel="output length", title="Output vs requested")
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    with AtomicFile(path) as fh:
        fh.write(buffer.getvalue())
    return Path(path)
