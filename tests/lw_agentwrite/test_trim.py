"""Length control helpers: where a cut section's last sentence ends, where a loop starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from lw_agentwrite.trim import loop_onset, repeated_share, trim_to_sentence
from lw_core import repeated_ngram_ratio

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ('He said "stop." Then he wa', 'He said "stop."'),  # closing quote after the full stop
        ("It costs 3.5 euros. It was 4", "It costs 3.5 euros."),  # a decimal point ends no sentence
        ("Why? Because it rained! So the", "Why? Because it rained!"),
        ("他说：“走吧。”然后他们", "他说：“走吧。”"),
        ("First point.\n\n**Second point**\n\nThe second", "First point."),  # a bold heading left last goes too
        ("Intro.\n- one\n- two\n- thr", "Intro.\n- one\n- two"),  # list items end at their line break
        ("A sentence. ", "A sentence."),
    ],
)
def test_trim_keeps_text_up_to_the_last_complete_sentence(text: str, kept: str) -> None:
    assert trim_to_sentence(text) == kept


def test_trim_gives_none_without_a_complete_sentence() -> None:
    assert trim_to_sentence("and then the wind rose over the") is None
    assert trim_to_sentence("## A heading\n\nand then the") is None


def test_loop_onset_finds_chinese_loops_and_long_period_loops() -> None:
    chinese = "海边有一座小城。" + "我是一个作家，我每天写作。" * 10
    assert chinese[: loop_onset(chinese)] == "海边有一座小城。我是一个作家，我每天写作"  # "。我是一" was seen before
    paragraph = " ".join(f"The {w} came home late and ate a {w} pie." for w in ("fox", "cat", "owl", "dog", "bee"))
    looped = "It was autumn. " + (paragraph + " ") * 3
    onset = loop_onset(looped)
    assert onset is not None and looped[:onset].strip() == f"It was autumn. {paragraph}"


def test_loop_onset_finds_nothing_in_natural_text() -> None:
    text = README.read_text(encoding="utf-8")  # ~1500 words of prose, lists and code with some repeated phrases
    assert repeated_ngram_ratio(text) < 0.3
    assert loop_onset(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "a b c d a b c d",
        "I am a writer. " * 20,
        "海边有一座小城。海边有一座小城。",
        README.read_text(encoding="utf-8"),
        "x",
    ],
)
def test_repeated_share_without_context_is_lw_datas_ratio(text: str) -> None:
    assert repeated_share(text) == pytest.approx(repeated_ngram_ratio(text))


def test_repeated_share_counts_what_copies_the_text_before() -> None:
    first = "The harbour wakes early. Fishermen load their nets while gulls circle the masts overhead."
    assert repeated_share(first, context="") == 0.0
    assert repeated_share(first, context=first) == 1.0  # a section that copies the one before
    assert repeated_share("Fishermen load their nets, then they sail out into the grey morning.", first) < 0.3


def test_agentwrite_cuts_loops_with_lw_cores_loop_onset() -> None:
    """One loop detector: the one lw-bench's rewards and lw-data's DPO scores measure length with."""
    import lw_core

    assert loop_onset is lw_core.loop_onset
