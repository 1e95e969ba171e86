"""Length control for writers that do not stop by themselves: cut at the last complete sentence, or where a loop starts.

A small model (the embedded 135M one) rarely ends a section on its own: it writes until ``max_tokens`` and often
falls into a loop on the way. For such a writer the per-section token cap *is* the length control, and a section cut
at its cap is worth keeping up to its last complete sentence; a loop is worth cutting where it starts.
"""

from __future__ import annotations

import re

from lw_core import loop_onset

__all__ = ["loop_onset", "repeated_share", "trim_to_sentence"]

# A sentence ends at . ! ? (then closing quotes or brackets, then a space or the end; not a list number's "3.") or at
# a CJK end mark (no space needed), and a line ends at a line break (headings and list items carry no full stop).
_PUNCTUATION_END = r"(?<!^\d)(?<!^\d\d)(?<!\n\d)(?<!\n\d\d)[.!?][\"'”’)\]]*(?=\s|$)|[。！？…][”’」』）\"']*"
_SENTENCE_END = re.compile(rf"{_PUNCTUATION_END}|\n")
_HAS_SENTENCE = re.compile(_PUNCTUATION_END)
# A last line that announces what the cut took away: a markdown heading, a bold line, a line ending in a colon.
_DANGLING_LINE = re.compile(r"\n[ \t]*(?:#[^\n]*|\*\*[^\n]*\*\*|[^\n]*[:：])[ \t]*$")
_CJK = re.compile(r"([\u4e00-\u9fff])")


def trim_to_sentence(text: str) -> str | None:
    """``text`` up to its last complete sentence (or line), stripped; None when it holds no complete sentence.

    A heading (or a line ending in a colon) left last by the cut goes too: it would announce what was cut away.

    >>> trim_to_sentence("The tide rose. Boats left the harbour. Then the")
    'The tide rose. Boats left the harbour.'
    >>> trim_to_sentence("潮水上涨。船离开了港口。然后")
    '潮水上涨。船离开了港口。'
    >>> trim_to_sentence("Tides follow the moon.\\n\\n## Spring tides\\n\\nTwice a month the")
    'Tides follow the moon.'
    >>> trim_to_sentence("Tides have causes. Two of them:\\n1. the moon\\n2. the sun\\n3. the ea")
    'Tides have causes. Two of them:\\n1. the moon\\n2. the sun'
    >>> trim_to_sentence("## Tides\\n\\nThe moon pulls the") is None
    True
    """
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    while ends:
        kept = text[: ends.pop()].strip()
        while (dangling := _DANGLING_LINE.search(kept)) is not None:
            kept = kept[: dangling.start()].rstrip()
        if _HAS_SENTENCE.search(kept):
            return kept
    return None


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
