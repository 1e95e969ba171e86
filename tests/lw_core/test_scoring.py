"""The toolkit's one length score, judgment-quality rule and repetition ratio, against the paper's code."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lw_core import DIMENSIONS, length_score, length_scores_array, quality_score, repeated_ngram_ratio


def paper_length_score(x: float, y: float) -> float:
    """THUDM/LongWriter evaluation/eval_length.py ``score``, verbatim."""
    if y > x:
        return 100 * max(0, 1.0 - (y / x - 1) / 3)
    return 100 * max(0, 1.0 - (x / y - 1) / 2)


def paper_quality(all_scores: list[dict[str, float]]) -> float:
    """THUDM/LongWriter evaluation/eval_quality.py's aggregation, verbatim (``total``)."""
    total_score = {}
    for dim in DIMENSIONS:
        scores = [float(score[dim]) if dim in score else 3 for score in all_scores]
        total_score[dim] = ((sum(scores) / len(scores)) - 1) * 25
    return sum(total_score.values()) / len(total_score)


@pytest.mark.parametrize(
    ("required", "actual", "expected"),
    [
        (1000, 1000, 100.0),
        (1000, 2500, 50.0),
        (1000, 4000, 0.0),
        (1000, 5000, 0.0),
        (1000, 500, 50.0),
        (900, 300, 0.0),
        (100, 0, 0.0),  # the paper divides by zero; defined as 0
    ],
)
def test_length_score_hand_computed(required: int, actual: int, expected: float) -> None:
    assert length_score(required, actual) == pytest.approx(expected, abs=1e-12)
    assert isinstance(length_score(required, actual), float)


def test_length_score_takes_required_first() -> None:
    # 500 words asked, 1000 written: too long by 2x (83.3); the other order would be too short by 2x (50)
    assert length_score(500, 1000) == pytest.approx(100 * (1 - 1 / 3))
    assert length_score(1000, 500) == 50.0


def test_length_score_rejects_impossible_lengths() -> None:
    with pytest.raises(ValueError, match="positive"):
        length_score(0, 10)
    with pytest.raises(ValueError, match="negative"):
        length_score(10, -1)


@given(st.integers(1, 50_000), st.integers(1, 200_000))
def test_length_score_is_the_papers_bit_for_bit(required: int, actual: int) -> None:
    value = length_score(required, actual)
    assert value == paper_length_score(required, actual)
    assert 0.0 <= value <= 100.0 and not math.isnan(value)


lengths = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)


@given(st.lists(st.tuples(lengths.filter(lambda x: x > 0), lengths), max_size=50))
def test_length_scores_array_is_the_scalar_bit_for_bit(rows: list[tuple[float, float]]) -> None:
    """The one vectorised length score (lw-bench's and lw-data's) equals the scalar to the last bit, floats too."""
    got = length_scores_array([x for x, _ in rows], [y for _, y in rows])
    assert got.dtype == "float64" and got.shape == (len(rows),)
    assert got.tolist() == [length_score(x, y) for x, y in rows]


@given(st.lists(st.tuples(st.integers(1, 50_000), st.integers(0, 200_000)), max_size=50))
def test_length_scores_array_on_word_counts(rows: list[tuple[int, int]]) -> None:
    got = length_scores_array([x for x, _ in rows], [y for _, y in rows]).tolist()
    assert got == [length_score(x, y) for x, y in rows]
    assert all(value == paper_length_score(x, y) for (x, y), value in zip(rows, got, strict=True) if y)


def test_length_scores_array_refuses_what_the_scalar_refuses() -> None:
    with pytest.raises(ValueError, match="positive"):
        length_scores_array([1000, 0], [10, 10])
    with pytest.raises(ValueError, match="negative"):
        length_scores_array([10], [-1])
    with pytest.raises(ValueError, match="shape"):
        length_scores_array([10, 20], [10])
    assert length_scores_array([], []).tolist() == []
    assert math.isnan(length_scores_array([100], [math.nan])[0])  # a null length stays unknown, never a score


def test_quality_of_one_judgment() -> None:
    scores = dict(zip(DIMENSIONS, (5, 4, 3, 2, 1, 5), strict=True))
    assert quality_score(scores) == pytest.approx((100 + 75 + 50 + 25 + 0 + 100) / 6)
    assert quality_score(dict.fromkeys(DIMENSIONS, 1)) == 0.0
    assert quality_score({**dict.fromkeys(DIMENSIONS, 3), "Overall": 1}) == 50.0  # extra keys ignored


def test_quality_needs_all_six_dimensions() -> None:
    partial = dict.fromkeys(DIMENSIONS[:5], 5)
    assert quality_score(partial) is None
    assert quality_score({}) is None


@given(st.lists(st.integers(1, 5), min_size=6, max_size=6))
def test_quality_is_the_papers_for_one_judgment(values: list[int]) -> None:
    scores = dict(zip(DIMENSIONS, values, strict=True))
    assert quality_score(scores) == paper_quality([scores])


def test_quality_reads_judge_json_numbers() -> None:
    scores = json.loads(
        '{"Relevance": 4, "Accuracy": 4.5, "Coherence": 3, "Clarity": 2, '
        '"Breadth and Depth": 1, "Reading Experience": 5}'
    )
    assert quality_score(scores) == pytest.approx((75 + 87.5 + 50 + 25 + 0 + 100) / 6)


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("a b c d a b c d", 4, 0.2),  # 5 four-grams, 4 distinct
        ("A b\tC d\na B\rc D", 4, 0.2),  # case, newlines, tabs and carriage returns do not matter
        ("too short", 4, 0.0),
        ("", 4, 0.0),
        ("我是我是", 2, 1 - 2 / 3),  # each ideograph a token: 我是 是我 我是
        ("x x x x", 1, 0.75),
    ],
)
def test_repeated_ngram_ratio(text: str, n: int, expected: float) -> None:
    assert repeated_ngram_ratio(text, n) == pytest.approx(expected)


def test_a_loop_scores_high_and_prose_low() -> None:
    assert repeated_ngram_ratio("I am a writer. " * 50) > 0.9
    assert repeated_ngram_ratio(" ".join(f"w{i}" for i in range(400))) == 0.0


def test_repeated_ngram_ratio_rejects_empty_grams() -> None:
    with pytest.raises(ValueError, match="n-gram"):
        repeated_ngram_ratio("a b", 0)


def test_a_looping_text_scores_below_a_clean_one_of_the_same_length() -> None:
    from lw_core import count_words, loop_aware_length_score, loop_free_words

    clean = " ".join(a + b for a in "abcdefghij" for b in "abcdefghij")  # 100 different words
    looped = "The harbour was quiet at dawn and the boats were still. " + "I am a writer and I write. " * 13
    assert count_words(clean) == 100 and count_words(looped) == 11 + 13 * 7
    assert loop_aware_length_score(100, clean) == length_score(100, 100) == 100.0
    assert loop_free_words(looped) == 11 + 7, "the loop counts once: where it starts, one copy is kept"
    assert loop_aware_length_score(count_words(looped), looped) < loop_aware_length_score(100, clean)
    assert length_score(count_words(looped), count_words(looped)) == 100.0, "the paper's S_l counts the loop"
