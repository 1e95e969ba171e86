"""The paper's length measure, a language guess, and the text-shape detectors shared by every stage.

LongBench-Write counts CJK ideographs (U+4E00–U+9FFF) plus ASCII-letter words matched by
``\\b[a-zA-Z]+\\b`` under Python ``re`` semantics. Scores are only comparable with the paper's
when this is reproduced exactly, so the reference implementation *is* those two regexes.

Where a text's last complete sentence ends (:func:`trim_to_sentence`, :func:`ends_with_sentence`) and which sentences
talk about the writing task instead of doing it (:data:`TASK_TALK`) live here once: AgentWrite cuts sections with the
first, lw-data strips the second from training data, and lw-bench's RL rewards penalise both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import polars as pl

_CJK = re.compile(r"[\u4e00-\u9fff]")
_WORD = re.compile(r"\b[a-zA-Z]+\b")

# A sentence ends at . ! ? (then closing quotes or brackets, then a space or the end; not a list number's "3.") or at
# a CJK end mark (no space needed), and a line ends at a line break (headings and list items carry no full stop).
_PUNCTUATION_END = r"(?<!^\d)(?<!^\d\d)(?<!\n\d)(?<!\n\d\d)[.!?][\"'”’)\]]*(?=\s|$)|[。！？…][”’」』）\"']*"
_SENTENCE_END = re.compile(rf"{_PUNCTUATION_END}|\n")
_HAS_SENTENCE = re.compile(_PUNCTUATION_END)
# A last line that announces what the cut took away: a markdown heading, a bold line, a line ending in a colon.
_DANGLING_LINE = re.compile(r"\n[ \t]*(?:#[^\n]*|\*\*[^\n]*\*\*|[^\n]*[:：])[ \t]*$")

# Sentences in which a writer talks about its task instead of doing it: "Here is a rewritten version of your
# text:", "This paragraph has two main points", "The word count of 212 words is too long". A 135M teacher writes
# them in 79 of 98 documents (62 % of them in sections that took a re-ask or a continuation), and a student trained
# on them says them back (19 of 40 LongBench-Write answers, against 1 of 40 before training).
_TASK_WORDS = (
    r"(?i:\b(?:rewritten|rephrased|revised version|edited version|rewrite (?:of|paragraph)|main points?|"
    r"word count|word limit|this (?:sentence|paragraph)|(?:next|previous|following) paragraph|the plan|"
    r"original (?:text|message)|here(?:'s| is) (?:the|a|an|your) (?:text|paragraph|version|draft)))\b"
    r"|改写|重写|字数|本段|这一段|下一段|主要内容"
)
#: One sentence that talks about the writing task (see :data:`TASK_TALK`), as regex source that Python's ``re`` and
#: Rust's ``regex`` (polars' ``str.replace_all``) read alike: lw-data strips it from columns with polars.
TASK_TALK_PATTERN = rf"[^.!?。！？\n]*?(?:{_TASK_WORDS})[^.!?。！？\n]*[.!?:：。！？]*"
#: :data:`TASK_TALK_PATTERN` compiled: ``TASK_TALK.findall(text)`` lists the sentences of ``text`` that talk about
#: the task ("Here is a rewritten version of your text:") rather than carry it out.
TASK_TALK = re.compile(TASK_TALK_PATTERN)


def count_words(text: str) -> int:
    """Number of CJK characters plus ASCII-letter words, exactly as the paper's evaluation counts.

    >>> count_words("Hello, world! 你好")
    4
    >>> count_words("don't stop 42 times")  # digits don't count, "don't" is two words
    4
    """
    return len(_CJK.findall(text)) + len(_WORD.findall(text))


#: Characters on which Rust's (polars) and Python's Unicode ``\w`` agree, so ``\b`` does too: ASCII, CJK
#: ideographs, CJK symbols and punctuation, and full-width forms, minus the tone marks U+302A–U+302F and the
#: full-width low line U+FF3F (word characters to Rust only). Checked code point by code point in the tests.
AGREED_CHARS = r"[\x00-\x7f\u3000-\u3029\u3030-\u303f\u4e00-\u9fff\uff00-\uff3e\uff40-\uffef]"


def count_words_batch(texts: Sequence[str] | Iterable[str]) -> list[int]:
    """:func:`count_words` over many texts, using polars (``lw-core[fast]``) when installed."""
    texts = list(texts)
    try:
        import polars as pl
    except ImportError:
        return [count_words(t) for t in texts]
    return count_words_series(pl.Series("t", texts, dtype=pl.String)).to_list()


def count_words_series(texts: pl.Series) -> pl.Series:
    """:func:`count_words` of each text of a polars string column (nulls stay null), exact, mostly in Rust.

    Exactness first: Rust's Unicode ``\\w`` agrees with Python's except on a few characters (combining marks,
    some digits, connector punctuation), so polars counts only texts made of :data:`AGREED_CHARS`; any other text
    uses the reference regexes. Pure-ASCII texts use the ASCII ``\\b``; the others avoid Unicode ``\\b`` (slow
    in Rust's regex engines) by counting word runs (``\\w+``) minus the runs holding anything but ASCII letters,
    which is the same number.
    """
    try:
        import polars as pl
    except ImportError as err:
        raise ImportError("count_words_series needs polars: pip install 'lw-core[fast]'") from err

    t = pl.col("t")
    frame = pl.DataFrame({"t": texts.cast(pl.String)}).with_row_index("i")
    frame = frame.with_columns(ascii=t.str.len_bytes() == t.str.len_chars())
    ascii_part = frame.filter("ascii").select("i", n=t.str.count_matches(r"(?-u:\b)[a-zA-Z]+(?-u:\b)"))
    rest = frame.filter(~pl.col("ascii")).with_columns(agreed=t.str.contains(f"^{AGREED_CHARS}*$"))
    letter_runs = t.str.count_matches(r"\w+") - t.str.count_matches(r"\w*[\w--[a-zA-Z]]\w*")
    agreed_part = rest.filter("agreed").select("i", n=t.str.count_matches(_CJK.pattern) + letter_runs)
    other = rest.filter(~pl.col("agreed"))
    other_part = pl.DataFrame({"i": other["i"], "n": [count_words(text) for text in other["t"]]})
    parts = pl.concat([part.cast({"i": pl.UInt32, "n": pl.Int64}) for part in (ascii_part, agreed_part, other_part)])
    counts = pl.repeat(None, texts.len(), dtype=pl.Int64, eager=True)  # null texts keep a null count
    return counts.scatter(parts["i"], parts["n"]).alias(texts.name)


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


def ends_with_sentence(text: str) -> bool:
    """Whether ``text`` ends with a complete sentence (or a finished list line): nothing :func:`trim_to_sentence`
    would cut. False for a text cut mid-sentence, one that ends on a heading, and one without a sentence at all.

    >>> ends_with_sentence("The tide rose. Boats left the harbour."), ends_with_sentence("The tide rose. Then the")
    (True, False)
    >>> ends_with_sentence("Tides follow the moon.\\n\\n## Spring tides"), ends_with_sentence("")
    (False, False)
    """
    return trim_to_sentence(text) == text.strip() != ""


def detect_language(text: str) -> Literal["zh", "en"]:
    """``zh`` when CJK characters outnumber ASCII words (the paper's two languages), else ``en``."""
    return "zh" if len(_CJK.findall(text)) > len(_WORD.findall(text)) else "en"
