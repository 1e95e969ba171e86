"""Blending with general data, train/validation splits, LongWriter-6k loading, and stats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from lw_core import PreferencePair
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


def pairs(prefix: str, n: int) -> pl.DataFrame:
    """lw-data's own pairs: prompt, chosen and rejected as message lists, with meta."""
    return pl.DataFrame(
        {
            "id": [f"{prefix}{i}" for i in range(n)],
            "prompt": [[{"role": "user", "content": f"{prefix} {i}"}] for i in range(n)],
            "chosen": [[{"role": "assistant", "content": "good"}]] * n,
            "rejected": [[{"role": "assistant", "content": "bad"}]] * n,
            "meta": [{"chosen_score": 90.0}] * n,
        }
    )


@pytest.mark.parametrize(("fraction", "n_long", "n_general"), [(0.1, 8, 72), (0.5, 8, 8), (0.05, 4, 76)])
def test_mix_pairs_holds_the_fraction(fraction: float, n_long: int, n_general: int) -> None:
    general = pl.DataFrame({"prompt": [f"q{i}" for i in range(76)], "chosen": ["yes"] * 76, "rejected": ["no"] * 76})
    mixed = mix(pairs("long", 8), general, long_fraction=fraction, seed=3)
    counts = dict(mixed.group_by("source").len().iter_rows())
    assert (counts.get("long", 0), counts.get("general", 0)) == (n_long, n_general)
    assert mixed.columns == ["id", "prompt", "chosen", "rejected", "source"]
    records = [PreferencePair.model_validate(row) for row in mixed.to_dicts()]
    assert len({r.id for r in records}) == mixed.height
    assert all([m.role for m in r.chosen] == ["assistant"] == [m.role for m in r.rejected] for r in records)
    assert mixed["source"].head(n_long * 2).n_unique() == 2 or fraction == 0.05  # shuffled, not stacked


def test_mix_pairs_reads_every_general_format() -> None:
    user, system = {"role": "user", "content": "Name a colour"}, {"role": "system", "content": "Be brief."}
    red, mud = {"role": "assistant", "content": "Red."}, {"role": "assistant", "content": "Mud."}
    conversations = pl.DataFrame({"chosen": [[system, user, red]], "rejected": [[system, user, mud]]})
    with_prompt_text = pl.DataFrame({"prompt": ["Name a colour"], "chosen": [[user, red]], "rejected": [[user, mud]]})
    strings = pl.DataFrame({"prompt": ["Name a colour"], "chosen": ["Red."], "rejected": ["Mud."]})
    for general, prompt in ((conversations, [system, user]), (with_prompt_text, [user]), (strings, [user])):
        mixed = mix(pairs("long", 1), general, long_fraction=0.5).filter(pl.col("source") == "general")
        assert mixed.select("prompt", "chosen", "rejected").to_dicts() == [
            {"prompt": prompt, "chosen": [red], "rejected": [mud]}
        ]
    with pytest.raises(DataError, match="general pairs: no 'prompt' column"):
        mix(pairs("long", 1), strings.drop("prompt"), long_fraction=0.5)
    with pytest.raises(DataError, match="long data holds preference pairs but general data SFT chats"):
        mix(pairs("long", 1), chats("general", 3), long_fraction=0.5)


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


def test_plot_leaves_the_callers_matplotlib_backend_alone(tmp_path: Path) -> None:
    probe = (
        "import matplotlib, polars as pl; matplotlib.use('svg'); from lw_data import plot; "
        "m = pl.DataFrame({'language': ['en'], 'type': ['-'], 'words': [900], 'requested': [1000]}); "
        f"plot(m, {str(tmp_path / 'p.png')!r}); import matplotlib.pyplot as plt; "
        "print(matplotlib.get_backend(), len(plt.get_fignums()))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["svg", "0"]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
