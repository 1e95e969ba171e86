"""DPO pair selection: the paper's rule (best + a seeded random other), best-vs-worst, margins, lw-core's scores."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lw_core import DIMENSIONS, PreferencePair, count_words, length_score, loop_free_words, quality_score
from lw_data import DataError, DPORule, build_dpo, mix
from lw_data.dpo import length_scores, quality_scores

WORST = DPORule(rejected="worst", min_margin=10)


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
            {"id": i, "sample": s, "replicate": 0, "scores": dict.fromkeys(DIMENSIONS, q), "status": status}
            for i, s, q in rows
        ]
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50_000), st.integers(0, 200_000)), min_size=1, max_size=20))
def test_length_scores_are_lw_cores(rows: list[tuple[int, int]]) -> None:
    frame = pl.DataFrame(rows, schema=["required", "actual"], orient="row")
    got = length_scores(frame["required"], frame["actual"]).to_list()
    assert got == [length_score(r, a) for r, a in rows]  # to the last bit


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from([*DIMENSIONS, "Extra"]), st.integers(1, 5)), min_size=1, max_size=5))
def test_quality_scores_are_lw_cores(judgments: list[dict[str, int]]) -> None:
    frame = pl.from_dicts([{"scores": j} for j in judgments], infer_schema_length=None)
    assert quality_scores(frame["scores"]).to_list() == [quality_score(j) for j in judgments]  # to the last bit


def test_best_and_worst_by_combined_score() -> None:
    p = preds(("a", 0, 100, 100), ("a", 1, 30, 100), ("a", 2, 90, 100))
    j = judged(("a", 0, 4), ("a", 1, 5), ("a", 2, 3))
    pairs, rejects = build_dpo(p, j, WORST)
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
    pairs, _ = build_dpo(p, j)
    # sample 0 averages to 3 (S 75), sample 1 is 4 (S 87.5): the failed judgment of sample 1 does not count
    assert pairs["meta"][0]["chosen_score"] == 87.5 and pairs["meta"][0]["rejected_score"] == 75.0


def test_prompts_without_a_usable_pair_are_rejects_with_reasons() -> None:
    p = preds(("one", 0, 100, 100), ("tie", 0, 100, 100), ("tie", 1, 100, 100), ("close", 0, 100, 100))
    p = pl.concat([p, preds(("close", 1, 95, 100), ("none", 0, 10, 100))])
    j = judged(("one", 0, 4), ("tie", 0, 4), ("tie", 1, 4), ("close", 0, 4), ("close", 1, 4))
    pairs, rejects = build_dpo(p, j, WORST)
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


def candidates(n_prompts: int, n_samples: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Prompts with distinct scores: in prompt i, sample s has quality 1 + (s + i) % n (the best moves around)."""
    rows = [(f"p{i}", s, 100, 100) for i in range(n_prompts) for s in range(n_samples)]
    scores = [(f"p{i}", s, 1 + (s + i) % n_samples) for i in range(n_prompts) for s in range(n_samples)]
    return preds(*rows), judged(*scores)


def best_sample(prompt_id: str, n_samples: int) -> int:
    return (n_samples - 1 - int(prompt_id[1:])) % n_samples


def rank(prompt_id: str, sample: int, n_samples: int) -> int:
    """0 for the worst candidate of the prompt, n - 1 for the best."""
    return (sample + int(prompt_id[1:])) % n_samples


def chosen_rejected(pairs: pl.DataFrame) -> dict[str, tuple[int, int]]:
    return {row["id"]: (row["meta"]["chosen_sample"], row["meta"]["rejected_sample"]) for row in pairs.to_dicts()}


def test_paper_rule_best_chosen_random_other_rejected_seeded() -> None:
    p, j = candidates(60, 4)
    pairs, rejects = build_dpo(p, j)  # the defaults: rejected="random", seed 0, no margin
    assert rejects.height == 0 and pairs.height == 60
    picks = chosen_rejected(pairs)
    assert all(chosen == best_sample(i, 4) for i, (chosen, _) in picks.items())  # the best is always chosen ...
    assert all(rejected != chosen for chosen, rejected in picks.values())  # ... and never rejected
    ranks = pl.Series([rank(i, rejected, 4) for i, (_, rejected) in picks.items()])
    assert sorted(ranks.unique()) == [0, 1, 2] and ranks.value_counts()["count"].min() >= 10  # a fair draw
    assert picks == chosen_rejected(build_dpo(p, j, DPORule(seed=0))[0])  # same seed, same pairs
    other = chosen_rejected(build_dpo(p, j, DPORule(seed=1))[0])
    assert sum(picks[i] != other[i] for i in picks) >= 20  # another seed draws differently (2/3 expected)


def test_random_draw_depends_only_on_the_seed_and_the_prompt() -> None:
    p, j = candidates(30, 4)
    picks = chosen_rejected(build_dpo(p, j, DPORule(seed=5))[0])
    shuffled = p.sample(fraction=1.0, shuffle=True, seed=9).filter(pl.col("id") != "p0")
    alone = chosen_rejected(build_dpo(shuffled, j.reverse(), DPORule(seed=5))[0])
    assert alone == {i: v for i, v in picks.items() if i != "p0"}


def test_two_candidates_always_pair_with_each_other() -> None:
    p, j = candidates(10, 2)
    for seed in range(5):
        picks = chosen_rejected(build_dpo(p, j, DPORule(seed=seed))[0])
        assert all((c, r) == (best_sample(i, 2), 1 - best_sample(i, 2)) for i, (c, r) in picks.items())


def test_worst_option_takes_the_lowest_score() -> None:
    p, j = candidates(20, 4)
    picks = chosen_rejected(build_dpo(p, j, DPORule(rejected="worst"))[0])
    assert all((rank(i, c, 4), rank(i, r, 4)) == (3, 0) for i, (c, r) in picks.items())


def test_paper_rule_keeps_ties_and_small_gaps_a_margin_drops_them() -> None:
    p = preds(("tie", 0, 100, 100), ("tie", 1, 100, 100), ("close", 0, 100, 100), ("close", 1, 95, 100))
    j = judged(("tie", 0, 4), ("tie", 1, 4), ("close", 0, 4), ("close", 1, 4))
    pairs, rejects = build_dpo(p, j)
    assert sorted(pairs["id"]) == ["close", "tie"] and rejects.height == 0
    assert chosen_rejected(pairs)["tie"] == (0, 1)  # ties: the earlier sample is the best
    pairs, rejects = build_dpo(p, j, DPORule(min_margin=10))
    assert pairs.height == 0
    assert dict(rejects.select("id", "reason").iter_rows()) == {
        "tie": "all candidates score the same",
        "close": "score margin below 10",
    }


def test_a_judgment_missing_a_dimension_counts_as_failed() -> None:
    p = preds(("a", 0, 100, 100), ("a", 1, 100, 100), ("a", 2, 100, 100))
    partial = {d: 5 for d in DIMENSIONS[:-1]}  # no score for the last dimension: lw-core's S_q is None
    j = pl.DataFrame(
        [
            {"id": "a", "sample": 0, "scores": dict.fromkeys(DIMENSIONS, 2)},
            {"id": "a", "sample": 1, "scores": dict.fromkeys(DIMENSIONS, 3)},
            {"id": "a", "sample": 2, "scores": partial},
        ]
    )
    pairs, _ = build_dpo(p, j)
    assert chosen_rejected(pairs)["a"] == (1, 0) and pairs["meta"][0]["candidates"] == 2


def test_fields_first_seen_late_in_a_judgments_file_are_read(tmp_path: Any) -> None:
    from lw_data import read_table

    failed = {"id": "a", "sample": 0, "scores": {}, "status": "failed"}
    ok = {"id": "a", "sample": 1, "scores": dict.fromkeys(DIMENSIONS, 4), "status": "ok"}
    path = tmp_path / "judgments.jsonl"
    path.write_text("".join(f"{json.dumps(r)}\n" for r in [failed] * 150 + [ok]))
    frame = read_table(path)
    assert frame.schema["scores"] == pl.Struct(dict.fromkeys(DIMENSIONS, pl.Int64))
    assert quality_scores(frame["scores"]).to_list() == [None] * 150 + [75.0]


def test_pairs_mix_with_general_preference_pairs_at_the_ratio() -> None:
    p, j = candidates(12, 4)
    pairs, _ = build_dpo(p, j)
    general = pl.DataFrame({"prompt": [f"g{i}" for i in range(200)], "chosen": ["yes"] * 200, "rejected": ["no"] * 200})
    for fraction in (0.1, 0.25, 0.6):
        mixed = mix(pairs, general, long_fraction=fraction, seed=2)
        long_share = (mixed["source"] == "long").mean()
        assert long_share == pytest.approx(fraction, abs=0.5 / mixed.height + 1e-9)
        assert [PreferencePair.model_validate(r).id for r in mixed.to_dicts()]


def distinct_words(n: int, offset: int = 0) -> list[str]:
    """``n`` different letter-only words (lw-core counts digits as no words)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [letters[k // 676 % 26] + letters[k // 26 % 26] + letters[k % 26] for k in range(offset, offset + n)]


@settings(max_examples=60, deadline=None)
@given(
    clean_words=st.integers(0, 120),
    loop=st.lists(st.integers(0, 400), min_size=2, max_size=9, unique=True),
    repeats=st.integers(4, 30),
    rejected=st.sampled_from(["random", "worst"]),
    quality=st.integers(1, 5),
)
def test_loop_free_never_prefers_a_looping_sample_to_a_clean_one_of_the_same_length(
    clean_words: int, loop: list[int], repeats: int, rejected: str, quality: int
) -> None:
    phrase = " ".join(distinct_words(len(loop), 5000 + min(loop))) + "."
    repeats = max(repeats, -(-60 // len(loop)))  # a loop of at least 60 words: long enough to be one
    looping = " ".join([*distinct_words(clean_words), *[phrase] * repeats])
    assert loop_free_words(looping) < count_words(looping)
    length = len(looping.split())
    clean = " ".join(distinct_words(length, 9000))
    p = pl.DataFrame(
        [
            {"id": "a", "prompt": "Write.", "response": text, "length": length, "sample": s}
            for s, text in enumerate([looping, clean])
        ]
    )
    j = judged(("a", 0, quality), ("a", 1, quality))  # the same S_q: only the length measure tells them apart
    for rule in (
        DPORule(length_measure="loop_free", rejected=rejected),
        DPORule(length_measure="loop_free", rejected=rejected, length_weight=1.0),
    ):
        pairs, _ = build_dpo(p, j if rule.length_weight < 1 else None, rule)
        meta = pairs["meta"][0]
        assert meta["chosen_sample"] == 1 and meta["chosen_length_score"] == 100.0
    # counting every word (the paper's measure) the two tie, and the earlier (looping) one wins the tie
    pairs, _ = build_dpo(p, j, DPORule())
    assert pairs["meta"][0]["chosen_sample"] == 0


def test_length_only_rule_needs_no_judge_and_scores_every_candidate() -> None:
    p = preds(("a", 0, 100, 100), ("a", 1, 30, 100), ("a", 2, 60, 100), ("b", 0, 10, 100))
    pairs, rejects = build_dpo(p, None, DPORule(length_weight=1, rejected="worst"))
    assert chosen_rejected(pairs) == {"a": (0, 1)}
    meta = pairs["meta"][0]
    assert meta["chosen_score"] == meta["chosen_length_score"] == 100.0 and meta["candidates"] == 3
    assert dict(rejects.select("id", "reason").iter_rows()) == {"b": "fewer than 2 judged candidates"}
    # a judge's failures do not drop a candidate when its S_q carries no weight
    partly = pl.concat([judged(("a", 0, 5)), judged(("a", 1, 1), status="failed")], how="diagonal_relaxed")
    assert chosen_rejected(build_dpo(p, partly, DPORule(length_weight=1, rejected="worst"))[0]) == {"a": (0, 1)}
    with pytest.raises(DataError, match=r"length_weight 0\.5 weighs the judge's S_q"):
        build_dpo(p, None, DPORule())
