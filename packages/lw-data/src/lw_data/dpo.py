"""DPO pairs from several scored candidates per prompt (lw-bench's predictions and judgments).

The paper's rule (LongWriter's DPO data: several sampled outputs per instruction, scored for quality and length):

1. Each candidate ``(id, sample)`` gets LongBench-Write's length score ``S_l`` (``lw_core.length_score``) and
   its quality score ``S_q`` (``lw_core.quality_score``: the six dimensions, each ``(score − 1) × 25``, averaged;
   a judgment that lacks a dimension counts as failed), averaged over the judge's replicates. Its overall score
   is ``S = length_weight · S_l + (1 − length_weight) · S_q``. Candidates without a usable judgment are skipped,
   unless ``length_weight`` is 1: then S is S_l alone and no judgments are needed (ours, for runs without a judge).
   ``length_measure="loop_free"`` (ours) counts only the words before a loop starts
   (:func:`lw_core.loop_free_words`), so a sample that reaches the required length by looping never beats a clean
   one of the same length; the paper's ``"words"`` counts every word.
2. Per prompt, ``chosen`` is the best S (ties: the earlier sample) and ``rejected`` one of the other candidates
   drawn at random — the paper's rule, seeded per prompt, so a prompt's pair depends only on the seed and its
   own candidates (not on file order or on the other prompts). ``rejected="worst"`` takes the lowest S instead,
   and ``min_margin`` drops pairs whose score gap is smaller (both ours, off by default). A prompt needs at least
   two scored candidates, or it goes to the rejects with the reason.

Mixing the pairs with general preference data, as the paper does, is :func:`lw_data.mix`.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
import polars as pl
from lw_core import DIMENSIONS, length_scores_array, loop_free_words
from lw_core.text import count_words_series
from pydantic import BaseModel, Field

from lw_data.errors import DataError


class DPORule(BaseModel):
    """How chosen and rejected are picked; see the module docstring. The defaults are the paper's."""

    length_weight: float = Field(
        0.5, ge=0, le=1, description="weight of S_l in S (the rest is S_q); 1: length alone, no judgments needed"
    )
    length_measure: Literal["words", "loop_free"] = Field(
        "words", description="words: every word, as the paper; loop_free: the words before a loop starts (ours)"
    )
    rejected: Literal["random", "worst"] = Field(
        "random", description="random: a seeded draw among the non-best candidates (paper); worst: the lowest S"
    )
    seed: int = Field(0, description="seed of the random draw")
    min_margin: float = Field(
        0.0, ge=0, description="minimum S gap between chosen and rejected (0: none, as the paper)"
    )
    system_prompt: str | None = None


def length_scores(required: pl.Series, actual: pl.Series) -> pl.Series:
    """``lw_core.length_score(required, actual)`` per row, bit-identical: 0–100, 100 at the required length.

    lw-core's numpy form (:func:`lw_core.length_scores_array`), not a polars expression: polars divides a column by a
    constant as a product with its reciprocal, which can differ from the scalar score in the last bit.
    """
    x, y = required.cast(pl.Float64).to_numpy(), actual.cast(pl.Float64).to_numpy()
    return pl.Series("length_score", length_scores_array(x, y))


def quality_scores(scores: pl.Series) -> pl.Series:
    """``lw_core.quality_score`` per row of a struct column of dimension scores (bit-identical); null unless all
    six dimensions are present."""
    fields = {f.name for f in scores.dtype.fields} if isinstance(scores.dtype, pl.Struct) else set()
    if not set(DIMENSIONS) <= fields:
        return pl.Series("quality_score", [None] * scores.len(), dtype=pl.Float64)
    total = np.zeros(scores.len())
    for dimension in DIMENSIONS:  # in lw-core's order: the same sum, rounding included
        total = total + (scores.struct.field(dimension).cast(pl.Float64).to_numpy() - 1) * 25
    return pl.Series("quality_score", total / len(DIMENSIONS), nan_to_null=True)


def score_candidates(predictions: pl.DataFrame, judgments: pl.DataFrame | None, rule: DPORule) -> pl.DataFrame:
    """One row per judged candidate with ``length_score``, ``quality_score`` and ``score`` (with ``length_weight``
    1, one row per candidate, judged or not: ``judgments`` may be ``None``)."""
    preds = predictions.with_columns(pl.col("sample").fill_null(0) if "sample" in predictions.columns else _sample0())
    bad_length = preds.filter(pl.col("length").is_null() | (pl.col("length") < 1))
    if bad_length.height:
        raise DataError(f"prediction '{bad_length['id'][0]}': 'length' (the required length) must be 1 or more")
    if "word_count" not in preds.columns or preds["word_count"].null_count() or (preds["word_count"] == 0).any():
        preds = preds.with_columns(word_count=count_words_series(preds["response"]))
    if rule.length_measure == "loop_free":
        counted = pl.Series([loop_free_words(text or "") for text in preds["response"]], dtype=pl.Int64)
    else:
        counted = preds["word_count"]
    preds = preds.with_columns(length_scores(preds["length"], counted))
    w = rule.length_weight
    if w == 1 and (judgments is None or judgments.is_empty()):
        return preds.with_columns(quality_score=pl.lit(None, dtype=pl.Float64), score=pl.col("length_score"))
    if judgments is None:
        raise DataError(f"length_weight {w:g} weighs the judge's S_q: give judgments (or set length_weight 1)")
    ok = judgments.with_columns(pl.col("sample").fill_null(0) if "sample" in judgments.columns else _sample0())
    if "status" in ok.columns:
        ok = ok.filter(pl.col("status").fill_null("ok") == "ok")
    if not isinstance(ok.schema.get("scores"), pl.Struct):
        raise DataError("judgments need a 'scores' object per row (dimension name → 1–5), as lw-bench writes them")
    per_judgment = ok.select("id", "sample").with_columns(q=quality_scores(ok["scores"]))
    quality = per_judgment.drop_nulls("q").group_by("id", "sample").agg(quality_score=pl.col("q").mean())
    if w == 1:  # judged or not, every candidate is scored by its length
        return preds.join(quality, on=["id", "sample"], how="left").with_columns(score=pl.col("length_score"))
    scored = preds.join(quality, on=["id", "sample"], how="inner")
    return scored.with_columns(score=w * pl.col("length_score") + (1 - w) * pl.col("quality_score"))


def _sample0() -> pl.Expr:
    return pl.lit(0, dtype=pl.Int64).alias("sample")


def _draw(seed: int) -> pl.Expr:
    """A number per prompt from ``seed`` and the prompt's id alone (SHA-256), for the random rejected sample."""

    def draw(prompt_id: str) -> int:
        return int.from_bytes(hashlib.sha256(f"{seed}\0{prompt_id}".encode()).digest()[:8], "big") >> 1

    return pl.col("id").map_elements(draw, return_dtype=pl.Int64)


def build_dpo(
    predictions: pl.DataFrame, judgments: pl.DataFrame | None, rule: DPORule | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Pick a chosen/rejected pair per prompt; return ``(pairs, rejects)``.

    ``predictions`` and ``judgments`` are tables of lw-core ``Prediction`` and ``Judgment`` records (``scores``
    a struct of dimensions; ``None`` with ``length_weight=1``). ``pairs`` are lw-core ``PreferencePair`` rows in
    TRL's conversational format: ``prompt`` (optional system + user), ``chosen`` and ``rejected`` (one assistant
    message each) and ``meta`` with both scores, length scores, words and samples; ``rejects`` has ``id``,
    ``reason`` and ``margin`` per unused prompt.

    >>> loop = "A quiet town by the sea. " + "I am a writer and I write. " * 14  # 104 words, 13 before the loop
    >>> clean = " ".join(a + b for a in "abcdefghijklm" for b in "abcdefgh")  # 104 different words
    >>> predictions = pl.DataFrame({"id": ["a", "a"], "prompt": ["Write 104 words."] * 2,
    ...                             "response": [loop, clean], "length": [104, 104], "sample": [0, 1]})
    >>> pairs, _ = build_dpo(predictions, None, DPORule(length_weight=1, length_measure="loop_free"))
    >>> pairs["meta"][0]["chosen_sample"], pairs["meta"][0]["rejected_length_score"]
    (1, 0.0)
    """
    rule = rule or DPORule()
    scored = score_candidates(predictions, judgments, rule).sort("id", "sample")
    grouped = scored.group_by("id", maintain_order=True).agg(
        pl.col("prompt").first(),
        pl.col("length").first(),
        responses=pl.col("response"),
        scores=pl.col("score"),
        length_scores=pl.col("length_score"),
        words=pl.col("word_count"),
        samples=pl.col("sample"),
    )
    n = pl.col("scores").list.len()
    best = pl.col("scores").list.arg_max()
    if rule.rejected == "worst":
        other = pl.col("scores").list.arg_min()
    else:  # one of the n - 1 others: draw k in [0, n-1) and skip over the best
        k = _draw(rule.seed) % (n - 1).clip(lower_bound=1)
        other = k + (k >= best).cast(pl.UInt32)
    grouped = grouped.with_columns(best=best, other=other.cast(pl.UInt32), n=n)

    def pick(column: str, index: str) -> pl.Expr:
        return pl.col(column).list.get(pl.col(index), null_on_oob=True)

    grouped = grouped.with_columns(
        chosen=pick("responses", "best"),
        rejected=pick("responses", "other"),
        chosen_score=pick("scores", "best"),
        rejected_score=pick("scores", "other"),
        chosen_length_score=pick("length_scores", "best"),
        rejected_length_score=pick("length_scores", "other"),
        chosen_words=pick("words", "best"),
        rejected_words=pick("words", "other"),
        chosen_sample=pick("samples", "best"),
        rejected_sample=pick("samples", "other"),
    ).with_columns(margin=pl.col("chosen_score") - pl.col("rejected_score"))
    # with a margin to keep (or the worst to take) a prompt whose candidates all tie has no pair; the paper's
    # rule (best + a random other, no margin) keeps it
    all_tie = (pl.col("scores").list.max() == pl.col("scores").list.min()) & (
        pl.lit(rule.rejected == "worst" or rule.min_margin > 0)
    )
    reason = (
        pl.when(pl.col("n") < 2)
        .then(pl.lit("fewer than 2 judged candidates"))
        .when(all_tie)
        .then(pl.lit("all candidates score the same"))
        .when(pl.col("margin") < rule.min_margin)
        .then(pl.lit(f"score margin below {rule.min_margin:g}"))
    )
    grouped = grouped.with_columns(reason=reason)
    all_ids = predictions.select("id").unique(maintain_order=True)
    unjudged = all_ids.join(grouped.select("id"), on="id", how="anti").with_columns(
        reason=pl.lit("no judged candidates"), margin=pl.lit(None, dtype=pl.Float64)
    )
    failed = grouped.filter(pl.col("reason").is_not_null()).select(
        "id", "reason", pl.when(pl.col("n") >= 2).then(pl.col("margin")).alias("margin")
    )
    rejects = pl.concat([failed, unjudged])
    kept = grouped.filter(pl.col("reason").is_null())
    user = [pl.struct(role=pl.lit("user"), content=pl.col("prompt"))]
    if rule.system_prompt:
        user.insert(0, pl.struct(role=pl.lit("system"), content=pl.lit(rule.system_prompt)))
    pairs = kept.select(
        "id",
        prompt=pl.concat_list(user),
        chosen=pl.concat_list(pl.struct(role=pl.lit("assistant"), content=pl.col("chosen"))),
        rejected=pl.concat_list(pl.struct(role=pl.lit("assistant"), content=pl.col("rejected"))),
        meta=pl.struct(
            "length",
            "chosen_words",
            "rejected_words",
            pl.col("chosen_score").round(2),
            pl.col("rejected_score").round(2),
            pl.col("chosen_length_score").round(2),
            pl.col("rejected_length_score").round(2),
            "chosen_sample",
            "rejected_sample",
            candidates="n",
        ),
    )
    return pairs, rejects
