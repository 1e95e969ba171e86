"""Vectorised text measures (polars expressions) that every stage shares.

Each one has a plain-Python twin in the tests (and the benchmark) that defines what it means; the polars version
must give the same numbers, only faster.
"""

from __future__ import annotations

import polars as pl

_CJK = r"[\u4e00-\u9fff]"


def normalize(col: pl.Expr) -> pl.Expr:
    """Text for near-duplicate detection: NFKC, lower case, no punctuation, single spaces."""
    return (
        col.str.normalize("NFKC")
        .str.to_lowercase()
        .str.replace_all(r"[\p{P}\p{S}]+", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def language(col: pl.Expr) -> pl.Expr:
    """``zh`` when CJK characters outnumber ASCII words (``lw_core.detect_language``), else ``en``."""
    cjk = col.str.count_matches(_CJK)
    words = col.str.count_matches(r"\b[a-zA-Z]+\b")
    return pl.when(cjk > words).then(pl.lit("zh")).otherwise(pl.lit("en"))
