"""The paper's formulas, pinned on hand-computed cases, and the report's aggregation."""

from __future__ import annotations

import math
from pathlib import Path

import lw_core
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lw_bench import LENGTH_RANGES, length_score, length_scores, load_items, score_run
from lw_bench.scoring import in_range
from lw_core import DIMENSIONS, BenchItem, Judgment, Prediction, count_words, quality_score


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
    assert ranges["[4000, ∞)"].n == 0
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


def test_lw_bench_scores_with_lw_cores_one_length_score() -> None:
    assert length_score is lw_core.length_score


@pytest.mark.parametrize("name", ["longbench_write", "longbench_write_en", "longwrite_ruler"])
def test_length_ranges_hold_every_item(name: str, data_dir: Path) -> None:
    items = load_items(name, data_dir=data_dir)
    homes = [[r for r in LENGTH_RANGES if in_range(i.length, *r)] for i in items]
    assert all(len(h) == 1 for h in homes)  # every item in exactly one range
    report = score_run([_prediction(i.id, i.length, "word " * i.length) for i in items], items=items)
    assert sum(g.n for g in report.by_length) == len(items) == report.overall.n
    assert report.meta["coverage"]["share"] == 1.0


def test_the_20000_word_item_is_in_the_open_last_range() -> None:
    report = score_run([_prediction("a", 20000, "word " * 20000), _prediction("b", 30000, "")])
    last = report.by_length[-1]
    assert last.name == "[4000, ∞)" and last.n == 2 and last.length_score == 50.0


def test_quality_counts_only_judgments_with_all_six_dimensions() -> None:
    predictions = [_prediction("a", 100, "word " * 100), _prediction("b", 100, "word " * 100)]
    partial = Judgment(id="b", scores={d: 1 for d in DIMENSIONS[:5]})  # a judge that skipped one dimension
    report = score_run(predictions, [_judgment("a", 4), partial])
    assert report.overall.n_judged == 1 and report.overall.quality_score == 75.0
    assert report.judge_failures == 1  # counted as a failure, as the paper drops it


def test_run_quality_is_the_mean_of_judgment_qualities() -> None:
    scores = [dict(zip(DIMENSIONS, (5, 4, 3, 2, 1, 5), strict=True)), dict.fromkeys(DIMENSIONS, 3)]
    predictions = [_prediction(str(i), 100, "word") for i in range(2)]
    judgments = [Judgment(id=str(i), scores=s) for i, s in enumerate(scores)]
    expected = sum(quality_score(s) or 0 for s in scores) / 2
    assert score_run(predictions, judgments).overall.quality_score == pytest.approx(expected, abs=1e-12)


def _items(n: int, length: int = 100) -> list[BenchItem]:
    return [BenchItem(prompt=f"prompt {i}", length=length) for i in range(n)]


def test_coverage_counts_missing_predictions_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    items = _items(4)
    predictions = [_prediction(i.id, 100, "word " * 100) for i in items[:3]]
    predictions.append(_prediction("not-in-the-set", 100, ""))
    report = score_run(predictions, items=items)
    coverage = report.meta["coverage"]
    assert (coverage["scored"], coverage["items"], coverage["share"]) == (3, 4, 0.75)
    assert coverage["missing"] == [items[3].id] and coverage["ignored"] == 1
    assert report.overall.n == 3 and report.overall.length_score == 100.0  # the paper's mean over what exists
    assert coverage["by_length"]["[0, 500)"] == [3, 4]
    assert "3 of 4 items scored" in caplog.text and "WARNING" in caplog.text


def test_full_coverage_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    items = _items(2)
    report = score_run([_prediction(i.id, 100, "word") for i in items], items=items)
    assert report.meta["coverage"]["share"] == 1.0 and not caplog.records


def test_without_the_item_set_coverage_is_unknown() -> None:
    coverage = score_run([_prediction("a", 100, "word")]).meta["coverage"]
    assert coverage["items"] is None and coverage["share"] is None and coverage["scored"] == 1


def test_output_length_per_required_length() -> None:
    items = [BenchItem(prompt=f"p{i}", length=length) for i, length in enumerate([1000, 1000, 1000, 2000, 5000])]
    words = [500, 1000, 3000, 2000]  # the 5000 item has no prediction
    predictions = [_prediction(i.id, i.length, "word " * w) for i, w in zip(items, words, strict=False)]
    table = {row["required"]: row for row in score_run(predictions, items=items).meta["by_required"]}
    assert list(table) == [1000, 2000, 5000]
    assert table[1000] == {
        "required": 1000,
        "items": 3,
        "n": 3,
        "mean": 1500.0,
        "median": 1000,
        "max": 3000,
        "S_l": pytest.approx((50.0 + 100.0 + 100 * (1 - 2 / 3)) / 3),
    }
    assert table[5000]["items"] == 1 and table[5000]["n"] == 0 and table[5000]["mean"] is None


def test_the_ruler_table_covers_all_48_items(data_dir: Path) -> None:
    items = load_items("longwrite_ruler", data_dir=data_dir)
    predictions = [_prediction(i.id, i.length, "word " * (i.length // 2)) for i in items]
    table = score_run(predictions, items=items).meta["by_required"]
    assert [r["required"] for r in table] == [1000, 2000, 5000, 10000, 20000, 30000]
    assert sum(r["items"] for r in table) == sum(r["n"] for r in table) == 48
    assert all(r["mean"] == r["median"] == r["max"] == r["required"] // 2 for r in table)


def test_degenerate_share_uses_the_repetition_threshold() -> None:
    loop = "I am a writer. " * 100
    prose = " ".join(f"w{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}" for i in range(400))
    report = score_run([_prediction("a", 400, loop), _prediction("b", 400, prose), _prediction("c", 400, "")])
    assert report.meta["degenerate"] == {"threshold": lw_core.REPETITION_THRESHOLD, "count": 1, "share": 1 / 3}
    assert report.meta["repetition"][0] > 0.9 and report.meta["repetition"][1:] == [0.0, 0.0]
    assert score_run([_prediction("a", 400, loop)], repetition_threshold=0.999).meta["degenerate"]["count"] == 0
