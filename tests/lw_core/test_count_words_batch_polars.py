"""count_words_batch's polars path: exact on the characters it accepts, and those checked one by one."""

from __future__ import annotations

import re

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from lw_core import count_words, count_words_batch
from lw_core.text import AGREED_CHARS, count_words_series


def _agreed_code_points() -> list[str]:
    spans = re.findall(r"\\x([0-9a-f]{2})-\\x([0-9a-f]{2})|\\u([0-9a-f]{4})-\\u([0-9a-f]{4})", AGREED_CHARS)
    out = []
    for a, b, c, d in spans:
        low, high = (int(a, 16), int(b, 16)) if a else (int(c, 16), int(d, 16))
        out += [chr(code) for code in range(low, high + 1)]
    return out


def test_python_and_polars_agree_on_word_characters_for_every_accepted_code_point() -> None:
    chars = _agreed_code_points()
    assert len(chars) > 20_000  # the parse above found every range
    rust = pl.Series(chars).str.contains(r"^\w$").to_list()
    python = [re.fullmatch(r"\w", c) is not None for c in chars]
    assert [hex(ord(c)) for c, r, p in zip(chars, rust, python, strict=True) if r != p] == []
    assert all(re.fullmatch(AGREED_CHARS, c) for c in chars)


_EDGES = st.sampled_from([*"ab Z9_ ,.中文一鿿，。：（）「」ＡＢ１２＿〪〭\u3029\u3030é\u0301ß٣²\u200d😀", "\ufeff"])


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.text(alphabet=_EDGES, max_size=30), min_size=1, max_size=20))
def test_batch_equals_scalar_on_texts_near_the_accepted_set(texts: list[str]) -> None:
    assert count_words_batch(texts) == [count_words(t) for t in texts]


def test_tricky_texts_match_the_reference() -> None:
    texts = [
        "Hello, world! 你好",
        "don't stop 42 times",
        "café naïve résumé",  # letters next to non-ASCII letters are not words
        "x\u0301yz abc",  # combining mark: Rust and Python disagree on \w here
        "snake_case and CamelCase",
        "中文English混排text测试",
        "①②③ abc ² def",
        "ＡＢＣ full-width Ａ1",
        "",
    ]
    assert count_words_series(pl.Series(texts)).to_list() == [count_words(t) for t in texts]


def test_order_is_kept_across_the_three_paths() -> None:
    texts = ["plain ascii words", "中文 and English，混合", "café au lait", "", "x〪y", "ok"]
    assert count_words_batch(texts) == [count_words(t) for t in texts] == [3, 6, 2, 0, 2, 1]


def test_series_keeps_nulls_and_name_on_every_path() -> None:
    texts = pl.Series("answer", ["a b", None, "中文 and English", None, "café au lait"])
    counts = count_words_series(texts)
    assert counts.name == "answer"
    assert counts.to_list() == [2, None, 4, None, 2]


def test_many_words_per_text_on_the_non_ascii_path() -> None:
    text = "长篇写作 long-form writing，第1章 chapter_1 x2 ok。" * 500
    assert count_words_series(pl.Series([text])).to_list() == [count_words(text)]
