"""DPO pair selection: the documented length-and-quality rule, margins, and unusable prompts."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from lw_core import PreferencePair
from lw_data import DPORule, build_dpo
from lw_data.dpo import length_score


def preds(*rows: tuple[str, int, int, int]) -> pl.DataFrame:
    """(id, sample, words, required length) → Prediction rows with that many words."""
    return pl.DataFrame(
        [
            {
                "id": i,
                "prompt": f"Write {req} words ({i})",
                "response": " ".join(["w"] * words),
                "length": req,
                "sample": s,
            }
            for i, s, words, req in rows
        ]
    )


def judged(*rows: tuple[str, int, float], status: str = "ok") -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"id": i, "sample": s, "replicate": 0, "scores": {"Relevance": q, "Coherence": q}, "status": status}
            for i, s, q in rows
        ]
    )


@pytest.mark.parametrize(
    ("words", "required", "score"),
    [(100, 100, 100.0), (200, 100, 100 * (1 - 1 / 3)), (400, 100, 0.0), (50, 100, 50.0), (0, 100, 0.0), (10, 100, 0.0)],
)
def test_length_score_is_longbench_writes(words: int, required: int, score: float) -> None:
    got = pl.select(length_score(pl.lit(words), pl.lit(required))).item()
    assert got == pytest.approx(score)


def test_best_and_worst_by_combined_score() -> None:
    p = preds(("a", 0, 100, 100), ("a", 1, 30, 100), ("a", 2, 90, 100))
    j = judged(("a", 0, 4), ("a", 1, 5), ("a", 2, 3))
    pairs, rejects = build_dpo(p, j)
    assert rejects.height == 0
    meta = pairs["meta"][0]
    # sample 0: S_l 100, S_q 75 → 87.5; sample 1: S_l 0 (30 of 100 words), S_q 100 → 50
    assert meta["chosen_words"] == 100 and meta["rejected_words"] == 30
    assert meta["chosen_score"] == 87.5 and meta["rejected_score"] == 50.0 and meta["candidates"] == 3


def test_length_weight_changes_the_choice() -> None:
    p = preds(("a", 0, 100, 100), ("a", 1, 30, 100))
    j = judged(("a", 0, 2), ("a", 1, 5))
    quality_only, _ = build_dpo(p, j, DPORule(length_weight=0.0))
    length_only, _ = build_dpo(p, j, DPORule(length_weight=1.0))
    assert quality_only["meta"][0]["chosen_words"] == 30
    assert length_only["meta"][0]["chosen_words"] == 100


def test_replicates_are_averaged_and_failed_judgments_ignored() -> None:
    p = preds(("a", 0, 100, 100), ("a", 1, 100, 100))
    j = pl.concat([judged(("a", 0, 5), ("a", 0, 1), ("a", 1, 4)), judged(("a", 1, 1), status="failed")])
    pairs, _ = build_dpo(p, j, DPORule(min_margin=0.1))
    # sample 0 averages to 3 (S 75), sample 1 is 4 (S 87.5): the failed judgment of sample 1 does not count
    assert pairs["meta"][0]["chosen_score"] == 87.5 and pairs["meta"][0]["rejected_score"] == 75.0


def test_prompts_without_a_usable_pair_are_rejects_with_reasons() -> None:
    p = preds(("one", 0, 100, 100), ("tie", 0, 100, 100), ("tie", 1, 100, 100), ("close", 0, 100, 100))
    p = pl.concat([p, preds(("close", 1, 95, 100), ("none", 0, 10, 100))])
    j = judged(("one", 0, 4), ("tie", 0, 4), ("tie", 1, 4), ("close", 0, 4), ("close", 1, 4))
    pairs, rejects = build_dpo(p, j)
    assert pairs.height == 0
    reasons = dict(rejects.select("id", "reason").iter_rows())
    assert reasons == {
        "one": "fewer than 2 judged candidates",
        "tie": "all candidates score the same",
        "close": "score margin below 10",
        "none": "no judged candidates",
    }


def test_pairs_are_trl_conversational_preference_pairs() -> None:
    p = preds(("a", 0, 100, 100), ("a", 1, 10, 100))
    j = judged(("a", 0, 4), ("a", 1, 4))
    pairs, _ = build_dpo(p, j, DPORule(system_prompt="sys"))
    record: Any = PreferencePair.model_validate(pairs.to_dicts()[0])
    assert [m.role for m in record.prompt] == ["system", "user"]
    assert [m.role for m in record.chosen] == ["assistant"] == [m.role for m in record.rejected]
    assert record.chosen[0].content.count("w") == 100 and record.id == "a"


def test_word_count_is_measured_when_missing_or_zero() -> None:
    p = preds(("a", 0, 100, 100), ("a", 1, 10, 100)).with_columns(word_count=pl.lit(0))
    pairs, _ = build_dpo(p, judged(("a", 0, 4), ("a", 1, 4)))
    assert pairs["meta"][0]["chosen_words"] == 100
