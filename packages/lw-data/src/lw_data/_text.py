"""Vectorised text measures (polars expressions) that every stage shares.

Each one has a plain-Python twin in the tests (and the benchmark) that defines what it means; the polars version
must give the same numbers, only faster.
"""

from __future__ import annotations

import polars as pl
from lw_core import count_words

_CJK = r"[\u4e00-\u9fff]"
#: Characters on which Rust's and Python's Unicode ``\b`` disagree (marks, "other" numerics, joiners).
_BOUNDARY_DISAGREE = r"[\p{M}\p{No}\u200c\u200d]"


def word_counts(texts: pl.Series) -> pl.Series:
    """The paper's word count (``lw_core.count_words``) of each text, exact, mostly in Rust.

    Pure-ASCII rows use ASCII word boundaries (identical to Python's there, and several times faster); other rows
    use Unicode boundaries, except the rare rows with characters on which Rust and Python disagree, which go
    through ``count_words`` itself.
    """
    frame = pl.DataFrame({"t": texts})
    is_ascii = frame.select(~pl.col("t").str.contains(r"[^\x00-\x7f]")).to_series()
    out = frame.select(pl.col("t").str.count_matches(r"(?-u:\b)[a-zA-Z]+(?-u:\b)").cast(pl.Int64)).to_series()
    if is_ascii.all():
        return out.alias(texts.name)
    rest = frame.with_row_index("i").filter(~is_ascii)
    tricky = rest.select(pl.col("t").str.contains(_BOUNDARY_DISAGREE)).to_series()
    fast = rest.filter(~tricky).select(
        "i", n=(pl.col("t").str.count_matches(_CJK) + pl.col("t").str.count_matches(r"\b[a-zA-Z]+\b")).cast(pl.Int64)
    )
    slow_rows = rest.filter(tricky)
    slow = pl.DataFrame(
        {"i": slow_rows["i"], "n": [count_words(t) for t in slow_rows["t"]]},
        schema={"i": pl.UInt32, "n": pl.Int64},
    )
    fixes = pl.concat([fast, slow])
    return out.scatter(fixes["i"], fixes["n"]).alias(texts.name)


def repetition_scores(texts: pl.Series, n: int = 4) -> pl.Series:
    """Repeated n-gram ratio of each text: 1 - distinct n-grams / all n-grams (0 = no repeats, near 1 = a loop).

    Tokens are the lower-cased text split on spaces, newlines and tabs, with every CJK ideograph a token of its
    own; n-grams are compared by a 64-bit hash of their tokens (collisions are negligible at these sizes). Texts
    with fewer than ``n`` tokens score 0. Rows without CJK skip the ideograph splitting, which is the slow part.
    """
    if not 1 <= n <= len(_MULTIPLIERS):
        raise ValueError(f"n-gram size must be 1..{len(_MULTIPLIERS)}, got {n}")
    e = pl.element()
    frame = pl.DataFrame({"t": texts}).with_row_index("i")
    frame = frame.with_columns(
        t=pl.col("t").str.to_lowercase().str.replace_all(r"[\n\t\r]", " "), cjk=pl.col("t").str.contains(_CJK)
    )
    spaced = pl.col("t").str.replace_all(r"([\u4e00-\u9fff])", " $1 ")
    split = pl.concat(
        [
            frame.filter(~pl.col("cjk")).select("i", tokens=pl.col("t").str.split(" ")),
            frame.filter(pl.col("cjk")).select("i", tokens=spaced.str.split(" ")),
        ]
    )
    hashed = split.select("i", h=pl.col("tokens").list.eval(e.filter(e.str.len_bytes() > 0).hash()))
    gram = e
    for k in range(1, n):
        gram = gram ^ (e.shift(-k) * _MULTIPLIERS[k])
    counted = hashed.select(
        "i",
        distinct=pl.col("h").list.eval(gram.drop_nulls().n_unique()).list.first(),
        total=pl.col("h").list.len().cast(pl.Int64) - (n - 1),
    )
    scores = counted.select("i", r=pl.when(pl.col("total") > 0).then(1.0 - pl.col("distinct") / pl.col("total")))
    out = pl.Series(texts.name, [0.0] * texts.len(), dtype=pl.Float64)
    return out.scatter(scores["i"], scores["r"].fill_null(0.0))


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
