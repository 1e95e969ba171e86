"""The output length a prompt asks for, read from its text ("5000 words", "10,000-word", "3000字", "两千字").

Counts are in the paper's unit: words for English, characters for Chinese. A range ("2000-3000 words",
"2000到3000字") gives its upper bound, as LongBench-Write's labels do; "1.5k" and "1.5万" are expanded; when a
prompt names several lengths the largest wins (it is the document's, the smaller ones are usually per-section).
"""

from __future__ import annotations

import re

import polars as pl

_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000}
_EN_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
}  # fmt: skip

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_EN_WORD = "|".join(_EN_NUMBERS)
_EN_MULT = r"\s*(?P<mult>k\b|K\b|thousand\b|hundred\b)?"
_EN_UNIT = r"[\s-]*(?:words?\b|word-long\b)"
_EN = re.compile(
    rf"(?P<lo>{_NUM}|(?:{_EN_WORD})\b){_EN_MULT}"
    rf"(?:\s*(?:-|–|to|and)\s*(?P<hi>{_NUM}|(?:{_EN_WORD})\b)\s*(?P<mult2>k\b|K\b|thousand\b|hundred\b)?)?"
    rf"{_EN_UNIT}",
    re.IGNORECASE,
)
_ZH_NUM = rf"(?:{_NUM})\s*万?|[零〇一二两三四五六七八九十百千万]+"
#: Smaller Chinese counts are words, not lengths: 十字路口 is a crossroads, not a ten-character text.
_ZH_MIN = 20
_ZH = re.compile(
    rf"(?P<lo>{_ZH_NUM})\s*(?:(?:-|–|~|～|到|至)\s*(?P<hi>{_ZH_NUM}))?\s*(?:个)?\s*(?:汉字|中文字|字|词|单词)"
    rf"|字数(?:要求)?\s*[:：为是]?\s*(?:约|大约|不少于|不低于)?\s*(?P<lo2>{_ZH_NUM})"
)


def chinese_number(text: str) -> int | None:
    """Value of a Chinese numeral such as 两千, 三千五百, 一万二千, 1.5万; None when it is not one.

    >>> chinese_number("三千五百"), chinese_number("两万"), chinese_number("1.5万")
    (3500, 20000, 15000)
    """
    text = text.strip()
    if not text:
        return None
    if text.endswith("万") and re.fullmatch(r"[\d.,]+", text[:-1].strip()):
        return int(float(text[:-1].replace(",", "")) * 10_000)
    total, section, digit = 0, 0, None
    for ch in text:
        if ch in _DIGITS:
            digit = _DIGITS[ch]
        elif ch == "万":
            total += (section + (digit or 0) or 1) * 10_000
            section, digit = 0, None
        elif ch in _UNITS:
            section += (1 if digit is None else digit) * _UNITS[ch]
            digit = None
        else:
            return None
    return total + section + (digit or 0)


def _value(token: str | None, mult: str | None = None) -> float | None:
    if token is None:
        return None
    token = token.strip()
    if token.lower() in _EN_NUMBERS:
        value: float = _EN_NUMBERS[token.lower()]
    elif re.fullmatch(r"[\d,]+(?:\.\d+)?", token):
        value = float(token.replace(",", ""))
    else:
        parsed = chinese_number(token)
        if parsed is None:
            return None
        value = parsed
    if mult:
        value *= {"k": 1000, "thousand": 1000, "hundred": 100}[mult.lower()]
    return value


def extract_length(prompt: str) -> int | None:
    """The length a prompt requests, in words (English) or characters (Chinese); None when it names none.

    >>> extract_length("Write a 10,000-word story"), extract_length("写一篇两千字的散文")
    (10000, 2000)
    >>> extract_length("An essay of 1.5k words"), extract_length("2000-3000 words on tides")
    (1500, 3000)
    """
    found: list[float] = []
    for m in _EN.finditer(prompt):
        lo = _value(m["lo"], m["mult"] or m["mult2"])
        hi = _value(m["hi"], m["mult2"] or m["mult"])
        if lo is not None:
            found.append(max(lo, hi or 0))
    for m in _ZH.finditer(prompt):
        lo, hi = _value(m["lo"] or m["lo2"]), _value(m["hi"])
        if lo is not None and lo >= _ZH_MIN:
            found.append(max(lo, hi or 0))
    found = [v for v in found if v >= 1]
    return round(max(found)) if found else None


def extract_lengths(prompts: pl.Series) -> pl.Series:
    """:func:`extract_length` over a column (prompts are short: the Python regexes take ~10 µs each)."""
    return prompts.map_elements(extract_length, return_dtype=pl.Int64, skip_nulls=True).alias("length")


def fill_lengths(lengths: pl.Series, prompts: pl.Series) -> pl.Series:
    """The given lengths, with each missing one read from its prompt (only those prompts are parsed)."""
    missing = lengths.is_null()
    if not missing.any():
        return lengths
    found = extract_lengths(prompts.filter(missing)).cast(lengths.dtype)
    return lengths.scatter(missing.arg_true(), found)


def relabel_length(prompt: str, length: int) -> str:
    """``prompt`` with the length it asks for (the one :func:`extract_length` reads) set to ``length``: hindsight
    relabelling, so an instruction asks for what its answer actually holds. A prompt that names no length is
    returned as it is; a range becomes the single number.

    >>> relabel_length("Write a 1,200-word essay on tides.", 987)
    'Write a 987-word essay on tides.'
    >>> relabel_length("An essay of 2000-3000 words on tides", 2412), relabel_length("写一篇两千字的散文", 1800)
    ('An essay of 2412 words on tides', '写一篇1800字的散文')
    >>> relabel_length("Write about tides.", 300)
    'Write about tides.'
    """
    best: tuple[float, int, int] | None = None  # (value, start, end) of the number span that states the length
    for m in _EN.finditer(prompt):
        lo = _value(m["lo"], m["mult"] or m["mult2"])
        hi = _value(m["hi"], m["mult2"] or m["mult"])
        if lo is not None:
            end = max(m.end(g) for g in ("lo", "mult", "hi", "mult2") if m[g] is not None)
            best = max(best or (0.0, 0, 0), (max(lo, hi or 0), m.start("lo"), end))
    for m in _ZH.finditer(prompt):
        group = "lo" if m["lo"] is not None else "lo2"
        lo, hi = _value(m[group]), _value(m["hi"])
        if lo is not None and lo >= _ZH_MIN:
            end = m.end("hi") if m["hi"] is not None else m.end(group)
            best = max(best or (0.0, 0, 0), (max(lo, hi or 0), m.start(group), end))
    if best is None or best[0] < 1:
        return prompt
    _, start, end = best
    span = prompt[start:end]
    number = f"{length:,}" if "," in span else str(length)  # "1,200-word" stays in its style: "1,034-word"
    return prompt[:start] + number + prompt[end:]
