"""The scores of one output, in one place for every lw package: length, judged quality and repetition.

``length_score`` and ``quality_score`` are THUDM/LongWriter's ``evaluation/eval_length.py`` and
``eval_quality.py`` (commit 3fcfdff) operation for operation, so floats are bit-identical to the paper's.
``length_scores_array`` is the length score of whole columns (numpy, from the ``fast`` extra), the one vectorised
form lw-bench and lw-data call. The vectorised quality and repetition forms live in lw-data, the one package that
needs their speed, and are tested against these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from lw_core.schemas import DIMENSIONS
from lw_core.text import count_words

if TYPE_CHECKING:
    import numpy
    import numpy.typing

#: Repeated-4-gram ratio above which a text counts as a loop: lw-data's SFT filter default (``max_repetition``) and
#: lw-bench's "degenerate output" share, so both call the same outputs degenerate.
REPETITION_THRESHOLD = 0.3

# Words for loop detection: every CJK ideograph, or a run of anything but spaces and ideographs (punctuation stays on
# its word, so "write." and "write" differ: a loop repeats its punctuation too).
_LOOP_TOKEN = re.compile(r"[\u4e00-\u9fff]|[^\s\u4e00-\u9fff]+")


def length_score(required: float, actual: float) -> float:
    """S_l of one output: how close ``actual`` length is to ``required``, 0–100; overshoot costs less than undershoot.

    ``100·max(0, 1 − (y/x − 1)/3)`` when longer, ``100·max(0, 1 − (x/y − 1)/2)`` otherwise; an empty answer
    (y = 0, where the paper divides by zero) scores 0.

    >>> length_score(1000, 1000), length_score(1000, 4000), length_score(900, 300), length_score(100, 0)
    (100.0, 0.0, 0.0, 0.0)
    >>> length_score(1000, 2500)
    50.0
    """
    if required <= 0:
        raise ValueError(f"required length must be positive, got {required}")
    if actual < 0:
        raise ValueError(f"output length cannot be negative, got {actual}")
    x, y = required, actual
    if y > x:
        return 100 * max(0.0, 1.0 - (y / x - 1) / 3)
    if y == 0:
        return 0.0
    return 100 * max(0.0, 1.0 - (x / y - 1) / 2)


def length_scores_array(required: numpy.typing.ArrayLike, actual: numpy.typing.ArrayLike) -> numpy.ndarray:
    """:func:`length_score` of each pair at once, as a float64 numpy array, bit-identical to the scalar form.

    numpy rather than a polars expression: polars' kernels turn ``a / 3`` into ``a * (1/3)``, which differs from
    the scalar (and the paper's) score in the last bit; numpy divides as Python does. Takes anything numpy turns
    into an array (lists, numpy arrays, polars or pandas series); a NaN (a null from polars) gives NaN. Lengths the
    scalar refuses are refused here too (:class:`ValueError`). Needs numpy: ``pip install 'lw-core[fast]'``.

    >>> length_scores_array([1000, 1000, 100], [2500, 500, 0]).tolist()
    [50.0, 50.0, 0.0]
    """
    try:
        import numpy as np
    except ImportError as err:
        raise ImportError("length_scores_array needs numpy: pip install 'lw-core[fast]'") from err
    x, y = np.asarray(required, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"required and actual lengths differ in shape: {x.shape} and {y.shape}")
    if (x <= 0).any():
        raise ValueError(f"required length must be positive, got {x[x <= 0][0]}")
    if (y < 0).any():
        raise ValueError(f"output length cannot be negative, got {y[y < 0][0]}")
    # y = 0 divides by zero, and a tiny length overflows to inf (scoring 0, as the scalar does): no warnings
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        too_long = 100 * np.maximum(0.0, 1.0 - (y / x - 1) / 3)
        too_short = 100 * np.maximum(0.0, 1.0 - (x / y - 1) / 2)
    return np.where(y > x, too_long, np.where(y == 0, 0.0, too_short))


def quality_score(scores: Mapping[str, float]) -> float | None:
    """S_q of one judgment: the mean over the six :data:`DIMENSIONS` of ``(score − 1) × 25``, 0–100.

    Defined only when all six dimensions are present (None otherwise): the original judge re-asks up to five
    times while a dimension is missing and then drops the item, so a partial judgment never enters S_q. Extra
    keys are ignored. A run's S_q averages each dimension over judgments first (see lw-bench's ``score_run``).

    >>> quality_score(dict.fromkeys(DIMENSIONS, 5))
    100.0
    >>> quality_score({"Relevance": 5}) is None
    True
    """
    if any(dim not in scores for dim in DIMENSIONS):
        return None
    per_dimension = [(float(scores[dim]) - 1) * 25 for dim in DIMENSIONS]
    return sum(per_dimension) / len(per_dimension)


def repeated_ngram_ratio(text: str, n: int = 4) -> float:
    """Share of repeated word n-grams: ``1 − distinct / all`` (0 = no repeats, near 1 = a loop; < n tokens: 0).

    Tokens are the lower-cased text split on spaces (newlines, tabs and carriage returns count as spaces), every
    CJK ideograph a token of its own. lw-data's filter and lw-bench's degenerate-output share use this definition.

    >>> round(repeated_ngram_ratio("a b c d a b c d"), 3)  # 5 four-grams, 4 distinct
    0.2
    >>> repeated_ngram_ratio("too short")
    0.0
    """
    if n < 1:
        raise ValueError(f"n-gram size must be at least 1, got {n}")
    text = re.sub(r"[\n\t\r]", " ", text).lower()
    text = re.sub(r"([\u4e00-\u9fff])", r" \1 ", text)
    words = [w for w in text.split(" ") if w]
    grams = list(zip(*(words[i:] for i in range(n)), strict=False))
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def loop_onset(text: str, context: str = "", n: int = 4, window: int = 24, repeated: float = 0.9) -> int | None:
    """Character offset where ``text`` starts looping (or copying ``context``, the text before it), or None.

    A loop starts at the first word n-gram seen before (in ``text`` or in ``context``) that opens a run of ``window``
    n-grams of which at least ``repeated`` were seen before (words lower-cased, every CJK ideograph a word, as in
    :func:`repeated_ngram_ratio`). Cutting there keeps one copy of what the model went on repeating. AgentWrite cuts
    sections here, and :func:`loop_free_words` measures length with it.

    >>> text = "A quiet town by the sea. " + "I am a writer and I write. " * 12
    >>> text[: loop_onset(text)]
    'A quiet town by the sea. I am a writer and I write. '
    >>> loop_onset("Every sentence here is new, and none of them repeats what came before it.") is None
    True
    """
    tokens = list(_LOOP_TOKEN.finditer(text))
    words = [t.group().lower() for t in tokens]
    grams = list(zip(*(words[i:] for i in range(n)), strict=False))
    if len(grams) < window:
        return None
    known = [t.lower() for t in _LOOP_TOKEN.findall(context)]
    seen: set[tuple[str, ...]] = set(zip(*(known[i:] for i in range(n)), strict=False))
    flags = []
    for gram in grams:
        flags.append(gram in seen)
        seen.add(gram)
    need = repeated * window
    count = sum(flags[:window])
    for start in range(len(grams) - window + 1):
        if start:
            count += flags[start + window - 1] - flags[start - 1]
        if count >= need:
            first = next(i for i in range(start, start + window) if flags[i])
            return tokens[first].start()
    return None


def loop_free_words(text: str) -> int:
    """:func:`~lw_core.count_words` of ``text`` up to where it starts looping (all of it when it does not loop).

    The length a writer actually reached: a loop adds words but nothing written, so it adds nothing here.

    >>> loop_free_words("A quiet town by the sea. " + "I am a writer and I write. " * 12)
    13
    """
    onset = loop_onset(text)
    return count_words(text if onset is None else text[:onset])


def loop_aware_length_score(required: float, text: str) -> float:
    """:func:`length_score` of the text before its loop onset (:func:`loop_free_words`), 0–100.

    Not the paper's S_l (which counts every word, looped or not, and stays lw-bench's benchmark score): the score
    that ranks samples for DPO pairs and rewards RL, where a loop that happens to reach the required length must
    not win. A clean text scores exactly its S_l.

    >>> clean = " ".join(a + b for a in "abcdefgh" for b in "abcdefgh")  # 64 different words: no loop
    >>> loop_aware_length_score(64, clean), length_score(64, 64)
    (100.0, 100.0)
    >>> looped = "A quiet town by the sea. " + "I am a writer and I write. " * 20  # 166 words, 13 before the loop
    >>> loop_aware_length_score(166, looped), length_score(166, 166)
    (0.0, 100.0)
    """
    return length_score(required, loop_free_words(text))
