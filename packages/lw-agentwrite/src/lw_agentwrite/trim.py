"""Length control for writers that do not stop by themselves: cut at the last complete sentence, or where a loop starts.

A small model (the embedded 135M one) rarely ends a section on its own: it writes until ``max_tokens`` and often
falls into a loop on the way. For such a writer the per-section token cap *is* the length control, and a section cut
at its cap is worth keeping up to its last complete sentence; a loop is worth cutting where it starts. Both cuts are
lw-core's (``lw_core.trim_to_sentence``, ``lw_core.loop_onset``), shared with lw-bench's RL rewards.
"""

from __future__ import annotations

import re

from lw_core import loop_onset, trim_to_sentence

__all__ = ["loop_onset", "repeated_share", "trim_to_sentence"]

_CJK = re.compile(r"([\u4e00-\u9fff])")


def repeated_share(text: str, context: str = "", n: int = 4) -> float:
    """Share of ``text``'s word n-grams seen before it: earlier in ``text`` or anywhere in ``context``.

    With no context this is ``lw_core.repeated_ngram_ratio`` (``1 − distinct / all``, same tokens); with the text
    written so far as context it also catches a section that copies earlier sections, which lw-data's filter sees
    only in the whole document.

    >>> repeated_share("a b c d a b c d"), repeated_share("the tide rose again today", context="the tide rose again")
    (0.2, 0.5)
    """
    words = _words(text)
    grams = list(zip(*(words[i:] for i in range(n)), strict=False))
    if not grams:
        return 0.0
    known = _words(context)
    seen = set(zip(*(known[i:] for i in range(n)), strict=False))
    repeats = 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)


def _words(text: str) -> list[str]:
    """``lw_core.repeated_ngram_ratio``'s tokens: the lower-cased text split on spaces, every CJK ideograph a token."""
    text = _CJK.sub(r" \1 ", re.sub(r"[\n\t\r]", " ", text).lower())
    return [w for w in text.split(" ") if w]
