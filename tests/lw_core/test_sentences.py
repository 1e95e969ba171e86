"""The text-shape detectors lw-core shares: where the last complete sentence ends, and task talk.

AgentWrite cuts sections with ``trim_to_sentence``, lw-data strips task talk from columns with polars, lw-bench's
rewards penalise both: one definition, so these check it directly (lw-agentwrite's and lw-data's tests check their
uses of it).
"""

from __future__ import annotations

import re

import pytest
from lw_core import TASK_TALK, ends_with_sentence, trim_to_sentence
from lw_core.text import TASK_TALK_PATTERN


@pytest.mark.parametrize(
    ("text", "ends"),
    [
        ("The tide rose. Boats left the harbour.", True),
        ("The tide rose. Boats left the harbour.  \n", True),  # trailing space does not count
        ('He said "stop."', True),
        ("潮水上涨。船离开了港口。", True),
        ("Intro.\n- one\n- two\n", True),  # a finished list line ends at its line break
        ("The tide rose. Then the", False),
        ("It costs 3.5 euros. It was 4", False),
        ("Tides follow the moon.\n\n## Spring tides", False),  # a heading announces text that never came
        ("Two causes:", False),
        ("", False),
        ("no sentence at all", False),
    ],
)
def test_ends_with_sentence_is_true_exactly_when_trimming_would_cut_nothing(text: str, ends: bool) -> None:
    assert ends_with_sentence(text) is ends
    assert ends == (trim_to_sentence(text) == text.strip() and bool(text.strip()))


def test_task_talk_finds_sentences_about_the_task_and_leaves_the_writing_alone() -> None:
    text = (
        "Here is a rewritten version of your text:\n\nTides rise twice a day. This paragraph has two main points. "
        "The moon pulls the sea.\n写一段关于海的文字。本段主要介绍潮汐。"
    )
    found = [sentence.strip() for sentence in TASK_TALK.findall(text)]
    assert found == [
        "Here is a rewritten version of your text:",
        "This paragraph has two main points.",
        "本段主要介绍潮汐。",
    ]
    assert TASK_TALK.search("Tides rise twice a day. The moon pulls the sea; the sun helps.") is None


def test_the_task_talk_pattern_is_the_same_regex_for_python_and_polars() -> None:
    """lw-data runs the pattern's source through polars (Rust's regex): both engines must find the same sentences."""
    pl = pytest.importorskip("polars")
    texts = [
        "Here's the draft you asked for. Waves break on rocks.",
        "The word count is 212 words. Gulls cry.\nThe next paragraph covers storms.",
        "The original text was long; it was shortened.",
        "Nothing here talks about writing.",
        "下一段讲风暴。海鸥在叫。",
    ]
    by_python = [re.sub(TASK_TALK_PATTERN, "", t) for t in texts]
    by_polars = pl.Series(texts).str.replace_all(TASK_TALK_PATTERN, "").to_list()
    assert by_python == by_polars
    assert by_python[3] == texts[3] and by_python[0] != texts[0]
