"""The paper's formulas, pinned on hand-computed cases, and the report's aggregation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lw_bench import length_score, length_scores, score_run
from lw_core import DIMENSIONS, Judgment, Prediction, count_words


def paper_score(x: float, y: float) -> float:
    """The paper's eval_length.py formula, verbatim in structure."""
    if y > x:
        return 100 * max(0, 1.0 - (y / x - 1) / 3)
    return 100 * max(0, 1.0 - (x / y - 1) / 2)


@pytest.mark.parametrize(
    ("required", "actual", "expected"),
    [
        (1000, 1000, 100.0),
        (1000, 2500, 50.0),  # over: 1 - (2.5 - 1)/3 = 0.5
        (1000, 4000, 0.0),  # exactly 4x over: the score reaches 0
        (1000, 5000, 0.0),  # beyond: clamped at 0, never negative
        (1000, 1300, 90.0),  # 1 - 0.3/3
        (1000, 500, 50.0),  # under: 1 - (2 - 1)/2 = 0.5
        (900, 300, 0.0),  # exactly 1/3: the score reaches 0
        (900, 200, 0.0),  # below 1/3: clamped at 0
        (800, 400, 50.0),
        (100, 0, 0.0),  # empty answer: defined as 0 (the paper divides by zero)
        (3, 4, 100 * (1 - (4 / 3 - 1) / 3)),
    ],
)
def test_length_score_hand_computed(required: int, actual: int, expected: float) -> None:
    assert length_score(required, actual) == pytest.approx(expected, abs=1e-12)
    assert length_scores([required], [actual]).to_list() == [length_score(required, actual)]


def test_overshoot_is_penalised_less_than_undershoot() -> None:
    assert length_score(1000, 2000) > length_score(1000, 500)


def test_invalid_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        length_score(0, 10)
    with pytest.raises(ValueError, match="negative"):
        length_score(10, -1)
    with pytest.raises(ValueError):
        length_scores([0], [1])


@given(
    st.lists(
        st.tuples(st.integers(min_value=1, max_value=50_000), st.integers(min_value=0, max_value=200_000)),
        max_size=200,
    )
)
def test_vectorized_equals_scalar_and_paper_bit_for_bit(rows: list[tuple[int, int]]) -> None:
    xs, ys = [r[0] for r in rows], [r[1] for r in rows]
    vectorized = length_scores(xs, ys).to_list()
    for (x, y), value in zip(rows, vectorized, strict=True):
        assert value == length_score(x, y)
        if y:
            assert value == paper_score(x, y)
        assert 0.0 <= value <= 100.0 and not math.isnan(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("你好，世界！Hello, world.", 6),
        ("GPT-4o scored 92.5% on 2024-05-13", 3),  # GPT, scored, on: "o" in "4o" has no \b before it
        ("第3章：Python与AI的未来（2025年）", 7),  # 7 ideographs; "Python"/"AI" touch CJK (\w): no \b
        ("don't stop — it's 100 % fine", 6),
        ("１２３ＡＢＣ 全角", 2),  # full-width letters/digits are neither CJK ideographs nor ASCII words
        ("mixed中文english混合", 4),  # \b fails between a letter and a CJK ideograph (both \w)
    ],
)
def test_length_measure_on_mixed_text(text: str, expected: int) -> None:
    assert count_words(text) == expected


def _prediction(pid: str, length: int, response: str, kind: str = "A", sample: int = 0) -> Prediction:
    return Prediction(id=pid, prompt=f"prompt {pid}", response=response, length=length, type=kind, sample=sample)


def _judgment(pid: str, score: int, replicate: int = 0, status: str = "ok") -> Judgment:
    scores = {d: score for d in DIMENSIONS} if status == "ok" else {}
    return Judgment(id=pid, scores=scores, replicate=replicate, status=status)  # type: ignore[arg-type]


def test_score_run_aggregates_like_the_paper() -> None:
    predictions = [
        _prediction("a", 100, "word " * 100, "A"),  # S_l 100
        _prediction("b", 1000, "word " * 500, "B"),  # S_l 50
        _prediction("c", 3000, "", "B"),  # S_l 0 (empty)
    ]
    judgments = [_judgment("a", 5), _judgment("b", 3), _judgment("c", 1, status="failed"), _judgment("zzz", 1)]
    report = score_run(predictions, judgments, model="m")
    overall = report.overall
    assert overall.n == 3 and overall.n_judged == 2
    assert overall.length_score == pytest.approx(50.0)
    assert overall.dimensions == {d: pytest.approx((4 - 1) * 25) for d in DIMENSIONS}  # mean of 5 and 3
    assert overall.quality_score == pytest.approx(75.0)
    assert overall.score == pytest.approx(62.5)
    assert report.judge_failures == 1  # "zzz" judges no prediction of this run and is ignored
    ranges = {g.name: g for g in report.by_length}
    assert ranges["[0, 500)"].length_score == 100.0 and ranges["[0, 500)"].quality_score == 100.0
    assert ranges["[500, 2000)"].length_score == 50.0 and ranges["[500, 2000)"].quality_score == 50.0
    assert ranges["[2000, 4000)"].n == 1 and ranges["[2000, 4000)"].quality_score is None
    assert ranges["[4000, 20000)"].n == 0
    types = {g.name: g for g in report.by_type}
    assert types["B"].n == 2 and types["B"].length_score == 25.0
    assert report.meta["points"] == [[100, 100], [1000, 500], [3000, 0]]


def test_word_counts_are_recomputed_from_the_text() -> None:
    forged = _prediction("a", 100, "word " * 100).model_copy(update={"word_count": 999})
    assert score_run([forged]).overall.length_score == 100.0


def test_judge_replicates_give_mean_and_std() -> None:
    predictions = [_prediction("a", 100, "word " * 100), _prediction("b", 100, "word " * 100)]
    judgments = [_judgment("a", 4, 0), _judgment("b", 4, 0), _judgment("a", 2, 1), _judgment("b", 2, 1)]
    report = score_run(predictions, judgments)
    assert report.meta["replicates"] == 2
    assert report.overall.dimensions["Clarity"] == pytest.approx(50.0)  # mean 3 -> (3-1)*25
    assert report.dimension_std["Clarity"] == pytest.approx(math.sqrt(2) * 25)  # replicate scores 75 and 25
    assert report.dimension_std["S_q"] == pytest.approx(math.sqrt(2) * 25)


def test_a_later_success_supersedes_a_failure() -> None:
    predictions = [_prediction("a", 100, "word " * 100)]
    report = score_run(predictions, [_judgment("a", 1, status="failed"), _judgment("a", 5)])
    assert report.judge_failures == 0 and report.overall.quality_score == 100.0
