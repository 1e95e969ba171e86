"""The text measures (polars expressions and the numba pass) give the numbers of their plain-Python definitions
(lw-core's ``count_words`` and ``repeated_ngram_ratio``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lw_core import count_words, detect_language
from lw_core import repeated_ngram_ratio as reference_repetition
from lw_data._kernels import text_measures
from lw_data._text import language, normalize


def test_repetition_loops_high_and_prose_low() -> None:
    loop = "I am a writer. " * 50
    prose = " ".join(f"word{i}" for i in range(400))
    zh_loop = "我是一个作家。" * 40
    texts = [loop, prose, zh_loop, "too short", "", None]
    words, scores = text_measures(pl.Series(texts))
    assert scores[0] > 0.9 and scores[2] > 0.9
    assert scores[1] == scores[3] == scores[4] == scores[5] == 0.0
    assert words.to_list() == [200, 0, 240, 2, 0, None]  # "word12" holds digits: not a word to the paper
    for n in (1, 2, 4, 6):
        _, got = text_measures(pl.Series(texts), n)
        assert got.to_list() == [reference_repetition(t or "", n) for t in texts]


# Characters where a byte-level kernel could go wrong: word characters to Python but not to Rust (tone mark,
# Arabic digit, combining acute), letters whose lower case is context-dependent or two characters long (Σ, İ),
# full-width and title-case letters, a 4-byte emoji, CJK inside and next to words, and every separator.
TRICKY = "aZ_9' \n\t\r-你我。，é\u0301İΣσςǅＡ\u302a٣😀ß"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(TRICKY), max_size=80), st.integers(1, 6))
def test_measures_match_their_python_definitions(text: str, n: int) -> None:
    words, rep = text_measures(pl.Series([text]), n)
    assert words[0] == count_words(text)
    assert abs(rep[0] - reference_repetition(text, n)) < 1e-12


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=40), max_size=8))
def test_measures_match_on_any_unicode(texts: list[str]) -> None:
    words, rep = text_measures(pl.Series(texts, dtype=pl.String))
    assert words.to_list() == [count_words(t) for t in texts]
    assert rep.to_list() == pytest.approx([reference_repetition(t) for t in texts], abs=1e-12)


def test_repetition_lowers_case_as_python_does() -> None:
    # "ΣΣ".lower() is "σς" (final sigma) and "İ".lower() two characters: per-character tables get these wrong
    texts = ["ΣΣ σς", "İx i̇x", "ΑΣ ασ ας", "Straße STRASSE straße"]
    for n in (1, 2):
        _, rep = text_measures(pl.Series(texts), n)
        assert rep.to_list() == [reference_repetition(t, n) for t in texts]
    assert text_measures(pl.Series(texts), 1)[1].to_list()[:2] == [0.5, 0.5]


def test_measures_read_slices_and_chunked_columns() -> None:
    texts = ["one two three four one two three four", None, "写作写作写作", "ΣΑΣ ΣΑΣ ΣΑΣ ΣΑΣ ΣΑΣ"] * 3
    whole = pl.Series(texts)
    chunked = pl.concat([whole.slice(0, 5), whole.slice(5)], rechunk=False)
    assert chunked.n_chunks() == 2
    for column, expected in ((whole.slice(3, 6), texts[3:9]), (chunked, texts), (whole.clear(), [])):
        words, rep = text_measures(column)
        assert words.to_list() == [None if t is None else count_words(t) for t in expected]
        assert rep.to_list() == [reference_repetition(t or "") for t in expected]


def test_measures_reject_unsupported_ngram_sizes() -> None:
    with pytest.raises(ValueError, match="n-gram size"):
        text_measures(pl.Series(["a"]), 7)


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


def test_compiled_code_is_cached_under_lw_home_not_beside_the_source(tmp_path: Path) -> None:
    import lw_data

    source_dir = Path(lw_data.__file__).parent
    before = {p.name for p in source_dir.rglob("*.nb[ic]")}
    probe = "import polars as pl, numba; from lw_data._kernels import text_measures; text_measures(pl.Series(['a b']))"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"} | {"LW_HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-c", probe + "; assert not numba.config.CACHE_DIR"], env=env, check=True)
    assert list((tmp_path / "numba").rglob("*.nbi"))  # compiled once, found again by the next process
    assert {p.name for p in source_dir.rglob("*.nb[ic]")} == before  # nothing written into the package
