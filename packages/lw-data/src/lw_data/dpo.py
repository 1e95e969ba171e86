"""DPO pairs from several scored candidates per prompt (lw-bench's predictions and judgments).

The rule, paper-style (LongWriter §5: length-aware and quality-aware choice among sampled outputs):

1. Each candidate ``(id, sample)`` gets the LongBench-Write length score ``S_l`` (100 at the requested length,
   falling linearly to 0 at 4x too long or 3x too short) and a quality score ``S_q``: the mean of its judge's
   dimension scores (1–5, averaged over replicates), mapped to 0–100. Its overall score is
   ``S = length_weight * S_l + (1 - length_weight) * S_q`` (the paper's S with the default weight 0.5).
   Candidates without a successful judgment are skipped.
2. Per prompt, ``chosen`` is the best S and ``rejected`` the worst (ties: the earlier sample), provided there are
   at least two candidates and the gap is positive and at least ``min_margin`` points. Otherwise the prompt is a
   reject, with the reason.
"""

from __future__ import annotations

import polars as pl
from lw_core.text import count_words_series
from pydantic import BaseModel, Field

from lw_data.errors import DataError


class DPORule(BaseModel):
    """How chosen and rejected are picked; see the module docstring."""

    length_weight: float = Field(0.5, ge=0, le=1, description="weight of S_l in S (the rest is S_q)")
    min_margin: float = Field(10.0, ge=0, description="minimum S gap between chosen and rejected")
    system_prompt: str | None = None


def length_score(words: pl.Expr, required: pl.Expr) -> pl.Expr:
    """LongBench-Write's ``S_l`` in 0–100: ``100·(1 − (l'/l − 1)/3)`` when too long, ``100·(1 − (l/l' − 1)/2)``
    when too short, 0 for an empty answer."""
    ratio = words / required
    too_long = 100 * (1 - (ratio - 1) / 3)
    too_short = 100 * (1 - (1 / ratio - 1) / 2)
    score = pl.when(words <= 0).then(0.0).when(ratio > 1).then(too_long).otherwise(too_short)
    return score.clip(0.0, 100.0)


def score_candidates(predictions: pl.DataFrame, judgments: pl.DataFrame, rule: DPORule) -> pl.DataFrame:
    """One row per judged candidate with ``length_score``, ``quality_score`` and ``score``."""
    preds = predictions.with_columns(pl.col("sample").fill_null(0))
    if "word_count" not in preds.columns or preds["word_count"].null_count() or (preds["word_count"] == 0).any():
        preds = preds.with_columns(word_count=count_words_series(preds["response"]))
    ok = judgments.with_columns(pl.col("sample").fill_null(0))
    if "status" in ok.columns:
        ok = ok.filter(pl.col("status").fill_null("ok") == "ok")
    if not isinstance(ok.schema.get("scores"), pl.Struct):
        raise DataError("judgments need a 'scores' object per row (dimension name → 1–5), as lw-bench writes them")
    per_judgment = ok.select("id", "sample", q=pl.mean_horizontal(pl.col("scores").struct.unnest()))
    quality = per_judgment.group_by("id", "sample").agg(mean=pl.col("q").mean())
    scored = preds.join(quality, on=["id", "sample"], how="inner").filter(pl.col("mean").is_not_null())
    w = rule.length_weight
    return scored.with_columns(
        length_score=length_score(pl.col("word_count"), pl.col("length")),
        quality_score=(pl.col("mean") - 1) / 4 * 100,
    ).with_columns(score=w * pl.col("length_score") + (1 - w) * pl.col("quality_score"))


def build_dpo(
    predictions: pl.DataFrame, judgments: pl.DataFrame, rule: DPORule | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Pick a chosen/rejected pair per prompt; return ``(pairs, rejects)``.

    ``predictions`` and ``judgments`` are tables of lw-core ``Prediction`` and ``Judgment`` records (``scores``
    a struct of dimensions). ``pairs`` are lw-core ``PreferencePair`` rows in TRL's conversational format:
    ``prompt`` (optional system + user), ``chosen`` and ``rejected`` (one assistant message each) and ``meta``
    with both scores; ``rejects`` has ``id`` and ``reason`` per unused prompt.
    """
    rule = rule or DPORule()
    scored = score_candidates(predictions, judgments, rule).sort("id", pl.col("score"), "sample")
    best = pl.col("score").arg_max()
    worst = pl.col("score").arg_min()
    grouped = scored.group_by("id", maintain_order=True).agg(
        pl.col("prompt").first(),
        n=pl.len(),
        chosen=pl.col("response").gather(best),
        rejected=pl.col("response").gather(worst),
        chosen_score=pl.col("score").gather(best),
        rejected_score=pl.col("score").gather(worst),
        chosen_words=pl.col("word_count").gather(best),
        rejected_words=pl.col("word_count").gather(worst),
        length=pl.col("length").first(),
    )
    grouped = grouped.explode(
        "chosen", "rejected", "chosen_score", "rejected_score", "chosen_words", "rejected_words"
    ).with_columns(margin=pl.col("chosen_score") - pl.col("rejected_score"))
    reason = (
        pl.when(pl.col("n") < 2)
        .then(pl.lit("fewer than 2 judged candidates"))
        .when(pl.col("margin") <= 0)
        .then(pl.lit("all candidates score the same"))
        .when(pl.col("margin") < rule.min_margin)
        .then(pl.lit(f"score margin below {rule.min_margin:g}"))
    )
    grouped = grouped.with_columns(reason=reason)
    all_ids = predictions.select("id").unique(maintain_order=True)
    unjudged = all_ids.join(grouped.select("id"), on="id", how="anti").with_columns(
        reason=pl.lit("no judged candidates"), margin=pl.lit(None, dtype=pl.Float64)
    )
    rejects = pl.concat([grouped.filter(pl.col("reason").is_not_null()).select("id", "reason", "margin"), unjudged])
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
            candidates="n",
        ),
    )
    return pairs, rejects
