"""One compiled pass over a text column's UTF-8 bytes for the two per-document measures of build-sft.

Word counts and repeated n-gram ratios are what make build-sft slow when written as polars expressions: the
paper's ``\\b`` needs Python's Unicode ``\\w`` (Rust's differs, and is slow on non-ASCII text), and n-grams need
every text split into tokens. Here numba walks the Arrow buffers of the column once, on every core, decoding
UTF-8 as it goes. The meaning stays that of the plain-Python definitions (``lw_core.count_words`` and the twin in
the tests): Python's own ``\\w`` and ``str.lower`` are read into lookup tables on first use, and the two characters
whose lower case depends on context or is two characters long (capital sigma, dotted capital I) send their text
through ``str.lower`` first.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numba
import numpy as np
import polars as pl
from lw_core import cache_dir

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
# Odd 64-bit constants: position k of an n-gram multiplies its token hash by the k-th, so "a b" and "b a" differ.
_MULTIPLIERS = np.array(
    [1, 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5, 0xFF51AFD7ED558CCD],
    dtype=np.uint64,
)
MAX_NGRAM = len(_MULTIPLIERS)


@functools.cache
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """Python's ``\\w`` (uint8) and one-character ``str.lower`` (uint32) for every code point."""
    chars = "".join(map(chr, range(0x110000)))
    word = re.sub(r"\w", "\x01", re.sub(r"\W", "\x00", chars)).encode("latin-1")
    lower = np.arange(0x110000, dtype=np.uint32)
    # "İ".lower() is two characters and "Σ".lower() depends on its neighbours: both stay as they are here
    for lo, hi in ((0, 0x130), (0x131, 0x3A3), (0x3A4, 0x110000)):
        lowered = chars[lo:hi].lower().encode("utf-32-le", "surrogatepass")
        lower[lo:hi] = np.frombuffer(lowered, dtype=np.uint32)
    return np.frombuffer(word, dtype=np.uint8), lower


# numba caches compiled code beside the source file (site-packages, or a checkout) unless given a folder; lw keeps
# its caches under LW_HOME. CACHE_DIR is numba-wide, so it is set only while these functions are decorated (their
# cache path is fixed then), and a NUMBA_CACHE_DIR the user chose wins.
_numba_config: Any = numba.config  # its settings are set at run time: no attributes for a type checker
_numba_cache_dir = _numba_config.CACHE_DIR
_numba_config.CACHE_DIR = _numba_cache_dir or str(cache_dir("numba"))


@numba.njit(cache=True, inline="always")
def _decode(data: np.ndarray, k: int) -> tuple[Any, int]:  # a numpy int64 code point (numba types it)
    b = np.int64(data[k])
    if b < 0x80:
        return b, 1
    if b < 0xE0:
        return ((b & 0x1F) << 6) | (np.int64(data[k + 1]) & 0x3F), 2
    if b < 0xF0:
        return ((b & 0x0F) << 12) | ((np.int64(data[k + 1]) & 0x3F) << 6) | (np.int64(data[k + 2]) & 0x3F), 3
    c1, c2, c3 = np.int64(data[k + 1]) & 0x3F, np.int64(data[k + 2]) & 0x3F, np.int64(data[k + 3]) & 0x3F
    return ((b & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3, 4


@numba.njit(cache=True, parallel=True)
def _measure(data, offsets, n, word, lower, multipliers, words, repetition, needs_python_lower):  # type: ignore[no-untyped-def]
    for i in numba.prange(len(offsets) - 1):
        start, end = offsets[i], offsets[i + 1]
        # words: CJK ideographs plus \w runs made only of ASCII letters (what \b[a-zA-Z]+\b finds)
        count, in_run, letters_only = 0, False, True
        # tokens: runs between spaces/newlines/tabs, each CJK ideograph on its own, lower-cased, hashed (FNV-1a)
        hashes = np.empty(end - start, dtype=np.uint64)
        tokens, in_token, h, special = 0, False, _FNV_OFFSET, False
        k = start
        while k < end:
            cp, width = _decode(data, k)
            k += width
            cjk = 0x4E00 <= cp <= 0x9FFF
            count += cjk
            if word[cp]:
                letter = cp < 0x80 and 0x61 <= (cp | 0x20) <= 0x7A
                letters_only = letter if not in_run else letters_only and letter
                in_run = True
            else:
                count += in_run and letters_only
                in_run = False
            if (cp <= 0x20 and (cp == 0x20 or cp == 0x0A or cp == 0x09 or cp == 0x0D)) or cjk:
                if in_token:
                    hashes[tokens] = h
                    tokens += 1
                    in_token = False
                if cjk:
                    hashes[tokens] = (_FNV_OFFSET ^ np.uint64(cp)) * _FNV_PRIME
                    tokens += 1
                continue
            special |= cp == 0x130 or cp == 0x3A3
            if not in_token:
                in_token, h = True, _FNV_OFFSET
            h = (h ^ np.uint64(lower[cp])) * _FNV_PRIME
        count += in_run and letters_only
        if in_token:
            hashes[tokens] = h
            tokens += 1
        words[i] = count
        needs_python_lower[i] = special
        total = tokens - (n - 1)
        if total <= 0:
            repetition[i] = 0.0
            continue
        size = 16
        while size < 2 * total:
            size *= 2
        mask = np.uint64(size - 1)
        seen = np.zeros(size, dtype=np.uint64)  # open addressing; 0 marks an empty slot, so 0 is stored as 1
        distinct = 0
        for s in range(total):
            g = hashes[s]
            for j in range(1, n):
                g ^= hashes[s + j] * multipliers[j]
            if g == 0:
                g = np.uint64(1)
            slot = (g ^ (g >> np.uint64(29))) & mask
            while seen[slot] != 0 and seen[slot] != g:
                slot = (slot + np.uint64(1)) & mask
            if seen[slot] == 0:
                seen[slot] = g
                distinct += 1
        repetition[i] = 1.0 - distinct / total


_numba_config.CACHE_DIR = _numba_cache_dir


def _buffers(texts: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """UTF-8 bytes, int64 offsets and validity (bool, or None without nulls) of a string column, no Python str."""
    array = texts.cast(pl.String).rechunk().to_arrow(compat_level=pl.CompatLevel.oldest())  # large_string
    _, offsets, data = array.buffers()
    offs = np.frombuffer(offsets, dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    valid = texts.is_not_null().to_numpy() if texts.null_count() else None
    return raw, offs, valid


def text_measures(texts: pl.Series, n: int = 4) -> tuple[pl.Series, pl.Series]:
    """Paper word counts (``lw_core.count_words``; null stays null) and repeated n-gram ratios of each text.

    The ratio is 1 - distinct n-grams / all n-grams (0 = no repeats, near 1 = a loop; fewer than ``n`` tokens or
    null: 0). Tokens are the lower-cased text split on spaces, newlines and tabs, with every CJK ideograph a token
    of its own; n-grams are compared by a 64-bit hash (collisions are negligible at these sizes).

    >>> words, rep = text_measures(pl.Series(["a b c d a b c d", "你好 world"]), n=4)
    >>> words.to_list(), rep.round(3).to_list()
    ([8, 3], [0.2, 0.0])
    """
    if not 1 <= n <= MAX_NGRAM:
        raise ValueError(f"n-gram size must be 1..{MAX_NGRAM}, got {n}")
    word, lower = _tables()
    data, offsets, valid = _buffers(texts)
    rows = len(offsets) - 1
    words, repetition = np.zeros(rows, dtype=np.int64), np.zeros(rows, dtype=np.float64)
    special = np.zeros(rows, dtype=np.bool_)
    _measure(data, offsets, n, word, lower, _MULTIPLIERS, words, repetition, special)
    if special.any():  # rare: re-measure those texts after Python's own lower()
        (redo,) = np.nonzero(special)
        lowered = pl.Series([texts[int(i)].lower() for i in redo], dtype=pl.String)
        data, offsets, _ = _buffers(lowered)
        again = np.zeros(len(redo), dtype=np.float64)
        unused_words, unused_flags = np.zeros(len(redo), np.int64), np.zeros(len(redo), np.bool_)
        _measure(data, offsets, n, word, lower, _MULTIPLIERS, unused_words, again, unused_flags)
        repetition[redo] = again
    counts = pl.Series(texts.name, words)
    if valid is not None:
        counts = counts.zip_with(pl.Series(valid), pl.repeat(None, rows, dtype=pl.Int64, eager=True))
    return counts, pl.Series(texts.name, repetition)
