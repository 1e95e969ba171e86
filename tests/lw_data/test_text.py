"""The polars text measures give the same numbers as their plain-Python definitions."""

from __future__ import annotations

import re

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from lw_core import detect_language
from lw_data._text import language, normalize, repetition_scores


def reference_repetition(text: str, n: int = 4) -> float:
    text = re.sub(r"[\n\t\r]", " ", text).lower()
    text = re.sub(r"([\u4e00-\u9fff])", r" \1 ", text)
    words = [w for w in text.split(" ") if w]
    grams = list(zip(*(words[i:] for i in range(n)), strict=False))
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def test_repetition_scores_loops_high_and_prose_low() -> None:
    loop = "I am a writer. " * 50
    prose = " ".join(f"word{i}" for i in range(400))
    zh_loop = "我是一个作家。" * 40
    texts = [loop, prose, zh_loop, "too short", "", None]
    scores = repetition_scores(pl.Series(texts)).to_list()
    assert scores[0] > 0.9 and scores[2] > 0.9
    assert scores[1] == scores[3] == scores[4] == scores[5] == 0.0
    for n in (1, 2, 4, 6):
        got = repetition_scores(pl.Series(texts), n).to_list()
        assert got == [reference_repetition(t or "", n) for t in texts]


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab c\n你我"), max_size=120))
def test_repetition_matches_reference(text: str) -> None:
    got = repetition_scores(pl.Series([text]))[0]
    assert abs(got - reference_repetition(text)) < 1e-12


def test_normalize_makes_near_duplicates_equal() -> None:
    variants = [
        "Write a 5000-word essay!",
        "  write a 5000 word essay ",
        "WRITE A 5000 WORD ESSAY.",
        "Ｗrite a 5000 word essay",
    ]
    assert pl.DataFrame({"t": variants}).select(normalize(pl.col("t"))).to_series().n_unique() == 1


def test_language_matches_detect_language() -> None:
    texts = ["Write a story", "写一篇故事", "用English写 a story", "写a"]
    got = pl.DataFrame({"t": texts}).select(language(pl.col("t"))).to_series().to_list()
    assert got == [detect_language(t) for t in texts]
