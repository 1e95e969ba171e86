"""Blending with general data, train/validation splits, LongWriter-6k loading, and stats."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from lw_data import DataError, load_longwriter6k, measures, mix, plot, split, summarize, to_dataset


def chats(prefix: str, n: int, answer: str = "an answer") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "messages": [
                [{"role": "user", "content": f"{prefix} {i}"}, {"role": "assistant", "content": answer}]
                for i in range(n)
            ]
        }
    )


@pytest.mark.parametrize(
    ("fraction", "n_long", "n_general"), [(0.2, 10, 40), (0.5, 10, 10), (0.05, 5, 95), (1.0, 10, 0)]
)
def test_mix_holds_the_fraction(fraction: float, n_long: int, n_general: int) -> None:
    blended = mix(chats("long", 10), chats("general", 95), long_fraction=fraction, seed=1)
    counts = dict(blended.group_by("source").len().iter_rows())
    assert counts.get("long", 0) == n_long and counts.get("general", 0) == n_general
    assert blended["id"].null_count() == 0 and blended["id"].n_unique() == blended.height


def test_mix_is_shuffled_and_reproducible() -> None:
    a = mix(chats("long", 20), chats("general", 20), long_fraction=0.5, seed=7)
    assert a.equals(mix(chats("long", 20), chats("general", 20), long_fraction=0.5, seed=7))
    assert not a.equals(mix(chats("long", 20), chats("general", 20), long_fraction=0.5, seed=8))
    assert a["source"].head(20).n_unique() == 2  # interleaved, not concatenated


def test_mix_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="long_fraction"):
        mix(chats("a", 1), chats("b", 1), long_fraction=0)
    with pytest.raises(DataError, match="general data has no 'messages'"):
        mix(chats("a", 1), pl.DataFrame({"text": ["x"]}), long_fraction=0.5)


def test_split_keeps_prompts_on_one_side() -> None:
    frame = pl.concat([chats("q", 50), chats("q", 50)]).with_columns(
        id=pl.col("messages").list.first().struct.field("content")
    )
    train, validation = split(frame, val_fraction=0.1, seed=0)
    assert train.height + validation.height == 100 and validation.height == 10
    assert not set(train["id"]) & set(validation["id"])
    assert split(frame, val_fraction=0.0)[1].height == 0
    with pytest.raises(DataError):
        split(frame, val_fraction=1.0)


def test_longwriter6k_from_a_local_copy(tmp_path: Path) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": "写一篇两千字的文章"},
                {"role": "assistant", "content": "好" * 2000},
            ]
        },
        {"messages": [{"role": "user", "content": "Write 3 words"}, {"role": "assistant", "content": "one two three"}]},
        {"messages": [{"role": "user", "content": "no answer"}]},
    ]
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    frame = load_longwriter6k(path)
    assert frame["language"].to_list() == ["zh", "en"] and frame["words"].to_list() == [2000, 3]
    assert frame["id"].n_unique() == 2
    folder = tmp_path / "shards"
    folder.mkdir()
    path.rename(folder / "part-0.jsonl")
    assert load_longwriter6k(folder).height == 2


def test_to_dataset_keeps_messages(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    dataset = to_dataset(chats("q", 3))
    assert dataset[0]["messages"][1] == {"role": "assistant", "content": "an answer"}


def test_stats_table_and_plot(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "messages": [
                [{"role": "user", "content": "Write 4 words"}, {"role": "assistant", "content": "one two three four"}],
                [{"role": "user", "content": "写十字"}, {"role": "assistant", "content": "好" * 8}],
                [{"role": "user", "content": "Write"}, {"role": "assistant", "content": "a b"}],
            ],
            "meta": [
                {"language": "en", "type": "essay", "words": 4, "requested": 4},
                {"language": None, "type": None, "words": None, "requested": 10},
                {"language": "en", "type": "essay", "words": 2, "requested": None},
            ],
        }
    )
    m = measures(frame)
    assert m.to_dicts() == [
        {"language": "en", "type": "essay", "words": 4, "requested": 4},
        {"language": "zh", "type": "-", "words": 8, "requested": 10},
        {"language": "en", "type": "essay", "words": 2, "requested": None},
    ]
    table = {(r["language"], r["type"]): r for r in summarize(m).to_dicts()}
    assert table["en", "essay"]["rows"] == 2 and table["en", "essay"]["mean_ratio"] == 1.0
    assert table["all", "all"]["rows"] == 3 and table["all", "all"]["max"] == 8
    assert table["zh", "-"]["mean_ratio"] == 0.8
    png = plot(m, tmp_path / "stats.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_measures_without_meta() -> None:
    m = measures(chats("Write", 2, answer="一二三 four"))
    assert m["words"].to_list() == [4, 4] and m["requested"].to_list() == [None, None]
