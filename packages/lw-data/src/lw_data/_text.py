"""Vectorised text measures (polars expressions) that every stage shares.

Each one has a plain-Python twin in the tests (and the benchmark) that defines what it means; the polars version
must give the same numbers, only faster.
"""

from __future__ import annotations

import numpy as np
import polars as pl

_CJK = r"[\u4e00-\u9fff]"


def repetition_scores(texts: pl.Series, n: int = 4) -> pl.Series:
    """Repeated n-gram ratio of each text: 1 - distinct n-grams / all n-grams (0 = no repeats, near 1 = a loop).

    Tokens are the lower-cased text split on spaces, newlines and tabs, with every CJK ideograph a token of its
    own; n-grams are compared by a 64-bit hash of their tokens (collisions are negligible at these sizes). Texts
    with fewer than ``n`` tokens score 0. All texts' tokens go into one flat column, so the n-grams of the whole
    batch are built with a few vectorised passes rather than one list evaluation per text.
    """
    if not 1 <= n <= len(_MULTIPLIERS):
        raise ValueError(f"n-gram size must be 1..{len(_MULTIPLIERS)}, got {n}")
    t = pl.col("t")
    frame = pl.DataFrame({"t": texts}).with_row_index("i").with_columns(t.str.to_lowercase(), cjk=t.str.contains(_CJK))
    tokens = pl.concat(
        [  # splitting on spaces is much faster than the regex that CJK text needs
            frame.filter(~pl.col("cjk")).select("i", tok=t.str.replace_all(r"[\n\t\r]", " ").str.split(" ")),
            frame.filter("cjk").select("i", tok=t.str.extract_all(rf"{_CJK}|[^ \n\t\r\u4e00-\u9fff]+")),
        ]
    ).explode("tok")
    tokens = tokens.filter(pl.col("tok").str.len_bytes() > 0)
    row = tokens["i"].to_numpy()
    hashes = tokens["tok"].hash().to_numpy()
    end = len(hashes) - (n - 1)
    out = pl.Series(texts.name, [0.0] * texts.len(), dtype=pl.Float64)
    if end <= 0:
        return out
    grams = hashes[:end].copy()
    for k in range(1, n):  # uint64 arithmetic wraps, which is what a hash wants
        grams ^= hashes[k : k + end] * np.uint64(_MULTIPLIERS[k])
    whole = row[:end] == row[n - 1 :]  # the n-gram does not run into the next text
    counted = (
        pl.DataFrame({"i": row[:end][whole], "g": grams[whole]})
        .group_by("i")
        .agg(distinct=pl.col("g").n_unique(), total=pl.len())
    )
    scores = counted.select("i", r=1.0 - pl.col("distinct") / pl.col("total"))
    return out.scatter(scores["i"], scores["r"])


# Odd 64-bit constants: each position in the n-gram multiplies its token hash by a different one, so word order
# matters ("a b" and "b a" hash differently).
_MULTIPLIERS = (1, 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5, 0xFF51AFD7ED558CCD)


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
