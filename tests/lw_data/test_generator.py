"""The instruction generator: seeded, log-uniform requested lengths stated in the prompt, varied, LongBench-free."""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from lw_core import Instruction, detect_language
from lw_data import DataError, extract_length, generate_instructions
from lw_data import _catalog as catalog
from lw_data.generator import _normalize

LONGBENCH_WRITE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "longbench_write"


def test_same_seed_same_instructions_and_more_extends_them() -> None:
    a = generate_instructions(120, seed=7, languages=["en", "zh"])
    assert a.equals(generate_instructions(120, seed=7, languages=["en", "zh"]))
    assert a.head(50).equals(generate_instructions(50, seed=7, languages=["en", "zh"]))
    other = generate_instructions(120, seed=8, languages=["en", "zh"])
    assert len(set(a["prompt"]) & set(other["prompt"])) < 5


def test_every_instruction_states_its_length_the_way_longbench_write_does() -> None:
    rows = generate_instructions(1500, seed=0, languages=["en", "zh"])
    assert rows.height == 1500 and rows["id"].n_unique() == 1500
    assert rows.select(pl.col("prompt").map_elements(_normalize, return_dtype=pl.String).n_unique()).item() == 1500
    for row in rows.iter_rows(named=True):
        assert 100 <= row["length"] <= 3000
        assert extract_length(row["prompt"]) == row["length"], row["prompt"]
        record = Instruction.model_validate(row)
        assert record.language == detect_language(row["prompt"]) and record.id == row["id"]
    assert 0.4 < (rows["language"] == "zh").mean() < 0.6  # type: ignore[operator]


@pytest.mark.parametrize(("lo", "hi"), [(100, 3000), (500, 2000), (1000, 20000)])
def test_lengths_are_spread_log_uniformly(lo: int, hi: int) -> None:
    lengths = generate_instructions(2000, seed=1, min_words=lo, max_words=hi)["length"].to_numpy()
    assert lengths.min() >= lo and lengths.max() <= hi
    position = (pl.Series(lengths).log() - math.log(lo)) / (math.log(hi) - math.log(lo))
    quarters = (position * 4).floor().clip(0, 3).value_counts()["count"].to_list()
    assert len(quarters) == 4 and all(0.19 < q / 2000 < 0.31 for q in quarters)  # 0.25 each; not linear
    assert all(length % 10 == 0 for length in lengths)  # lengths people ask for: 350, 1200, not 1187


def test_forms_and_topics_vary() -> None:
    rows = generate_instructions(600, seed=2)
    assert rows["type"].n_unique() >= 20 and rows["type"].value_counts()["count"].max() < 0.15 * 600
    topics = rows["meta"].struct.field("topic")
    assert topics.n_unique() > 250
    long_forms = rows.filter(pl.col("type") == "novel chapter")["length"]
    assert long_forms.len() == 0 or long_forms.min() >= 1500  # each form within its plausible range


def test_general_requests_are_short_and_state_no_length() -> None:
    rows = generate_instructions(1000, seed=3, kind="general", languages=["en", "zh"])
    assert rows["length"].null_count() == 1000 and rows["id"].n_unique() == 1000
    shares = (
        rows.group_by("language", "type").len().with_columns(share=pl.col("len") / pl.col("len").sum().over("language"))
    )
    assert shares.height == 17 and shares["share"].max() < 0.2  # every type, none crowding out the rest
    for row in rows.iter_rows(named=True):
        assert extract_length(row["prompt"]) is None and len(row["prompt"]) < 200
        assert Instruction.model_validate(row).length is None


def test_nothing_equals_or_nearly_equals_a_longbench_write_prompt() -> None:
    files = sorted(LONGBENCH_WRITE.glob("*.jsonl"))
    if not files:
        pytest.skip(f"LongBench-Write files not found in {LONGBENCH_WRITE}")
    bench = [_normalize(json.loads(line)["prompt"]) for path in files for line in path.read_text().splitlines()]
    assert len(bench) == 228  # longbench_write (120), its English subset (60), longwrite_ruler (48)
    grams = [_trigrams(b) for b in bench]
    generated = pl.concat(
        [
            generate_instructions(800, seed=0, languages=["en", "zh"]),
            generate_instructions(200, seed=0, kind="general", languages=["en", "zh"]),
        ]
    )["prompt"]
    closest = 0.0
    for prompt in generated.map_elements(_normalize, return_dtype=pl.String):
        assert prompt not in bench
        own = _trigrams(prompt)
        jaccard, nearest = max((len(own & g) / len(own | g), i) for i, g in enumerate(grams))
        assert jaccard < 0.6, (prompt, bench[nearest])
        ratio = difflib.SequenceMatcher(None, prompt, bench[nearest], autojunk=False).ratio()
        assert ratio < 0.8, (prompt, bench[nearest])
        closest = max(closest, ratio)
    topics = [t for table in (catalog.TOPICS_EN, catalog.TOPICS_ZH) for kind in table.values() for t in kind]
    assert not [(t, b) for t in topics for b in bench if _normalize(t) in b]


def _trigrams(text: str) -> set[str]:
    return {text[i : i + 3] for i in range(max(1, len(text) - 2))}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": -1}, "n must be 0 or more"),
        ({"n": 5, "languages": ["fr"]}, "languages must be some of en, zh"),
        ({"n": 5, "min_words": 500, "max_words": 100}, "min_words <= max_words"),
        ({"n": 5, "kind": "short"}, "kind must be 'long' or 'general'"),
    ],
)
def test_bad_arguments_are_data_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError, match=message):
        generate_instructions(**kwargs)


def test_running_out_of_distinct_prompts_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import lw_data.generator as generator

    only_one = (("poem", lambda rng: ("tea", "Write a haiku about tea.")),)
    monkeypatch.setattr(generator, "_GENERAL_EN", only_one)
    with pytest.raises(DataError, match="only 1 distinct general instructions"):
        generate_instructions(2, kind="general")
