"""Requested-length extraction on a varied bilingual corpus and on LongBench-Write's labelled prompts."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from lw_data import extract_length
from lw_data.lengths import chinese_number, extract_lengths, fill_lengths

LONGBENCH_WRITE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "longbench_write"

CORPUS = [
    # English: digits, separators, hyphenated adjectives, k/thousand, number words, ranges
    ("Write a 5000 words essay about the ocean.", 5000),
    ("Write a 10,000-word story set on Mars.", 10000),
    ("Give me a 500-word summary of the report", 500),
    ("An essay of 1.5k words on tides", 1500),
    ("Write 2k words about trains", 2000),
    ("Compose a story of about 3 thousand words", 3000),
    ("five thousand words on the history of salt", 5000),
    ("Write between 2000 and 3000 words on reefs", 3000),
    ("2000-3000 words on glaciers", 3000),
    ("Produce a 20,000 word novella.", 20000),
    ("In 2020 we moved; write 300 words about it", 300),
    ("Please write an article (about 1,200 words) on bees", 1200),
    ("WRITE A 700 WORD LETTER", 700),
    ("Write one word", 1),
    # Chinese: digits, numerals with 两/万/百, ranges, units 字/汉字/词, 字数 labels
    ("写一篇3000字的文章", 3000),
    ("写一篇两千字的散文", 2000),
    ("写一篇三千五百字的报告", 3500),
    ("请写一篇约 800 字的作文", 800),
    ("写一篇1万字的小说", 10000),
    ("写一部1.5万字的中篇小说", 15000),
    ("写一篇一万二千字的小说", 12000),
    ("写五百个字的日记", 500),
    ("300到400字，小红书风格", 400),
    ("字数要求：2000左右", 2000),
    ("写一篇300词的英语作文", 300),
    ("不少于2000字，每段500字", 2000),
    ("写两万字", 20000),
    ("写一篇不少于五千汉字的论文", 5000),
    # no length stated
    ("Write a poem about cats", None),
    ("Write 3 paragraphs about dogs", None),
    ("写一首诗", None),
    ("写一篇关于十字路口的文章", None),
    ("Rank the top 10 movies of 2019", None),
]


@pytest.mark.parametrize(("prompt", "expected"), CORPUS)
def test_extract_length(prompt: str, expected: int | None) -> None:
    assert extract_length(prompt) == expected


def test_column_version_matches_scalar() -> None:
    prompts = pl.Series("prompt", [p for p, _ in CORPUS] + [None])
    assert extract_lengths(prompts).to_list() == [e for _, e in CORPUS] + [None]


def test_given_lengths_win_and_only_missing_ones_are_read() -> None:
    prompts = pl.Series(["Write 5000 words", "写一篇3000字的文章", "Write a poem", "Write 800 words"])
    given = pl.Series("length", [1200, None, None, None], dtype=pl.Int64)
    assert fill_lengths(given, prompts).to_list() == [1200, 3000, None, 800]
    assert fill_lengths(pl.Series([7, 8]), prompts.head(2)).to_list() == [7, 8]


@pytest.mark.parametrize(
    ("numeral", "value"),
    [
        ("两千", 2000),
        ("三千五百", 3500),
        ("一万二千", 12000),
        ("十", 10),
        ("十五", 15),
        ("两万", 20000),
        ("1.5万", 15000),
    ],
)
def test_chinese_numbers(numeral: str, value: int) -> None:
    assert chinese_number(numeral) == value


def test_chinese_number_rejects_other_text() -> None:
    assert chinese_number("千里") is None
    assert chinese_number("") is None


@pytest.mark.skipif(not LONGBENCH_WRITE.exists(), reason="shared LongBench-Write data not present")
def test_agrees_with_longbench_write_labels() -> None:
    """Where a LongBench-Write prompt states its length, extraction finds the labelled value."""
    rows = []
    for name in ("longbench_write.jsonl", "longwrite_ruler.jsonl"):
        rows += [json.loads(line) for line in (LONGBENCH_WRITE / name).read_text().splitlines() if line.strip()]
    found = [extract_length(r["prompt"]) for r in rows]
    agree = sum(f == r["length"] for f, r in zip(found, rows, strict=True))
    wrong = sum(f is not None and f != r["length"] for f, r in zip(found, rows, strict=True))
    # the misses are prompts with no stated length ("a 50-page novel") or a per-part one ("5 diaries of 400 字")
    assert agree >= 0.95 * len(rows)
    assert wrong <= 2
