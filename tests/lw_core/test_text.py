"""count_words against an oracle that shares no code or regex with it, and against hand-counted cases."""

from hypothesis import given, settings
from hypothesis import strategies as st
from lw_core import count_words, count_words_batch, detect_language


def _is_word_char(char: str) -> bool:
    """Python ``re``'s Unicode ``\\w``, written with str methods: alphanumeric or underscore."""
    return char.isalnum() or char == "_"


def oracle(text: str) -> int:
    """The paper's count, by scanning: CJK ideographs one by one, plus every maximal run of ASCII letters
    that is not glued to another word character on either side (that is what ``\\b[a-zA-Z]+\\b`` finds)."""
    count, i = 0, 0
    while i < len(text):
        char = text[i]
        if "\u4e00" <= char <= "\u9fff":
            count += 1
        if char.isascii() and char.isalpha():
            end = i
            while end < len(text) and text[end].isascii() and text[end].isalpha():
                end += 1
            before_ok = i == 0 or not _is_word_char(text[i - 1])
            after_ok = end == len(text) or not _is_word_char(text[end])
            count += before_ok and after_ok
            i = end
            continue
        i += 1
    return count


# Mix the alphabets where the definition has edges: ASCII letters/digits, underscores, CJK, accented letters,
# combining marks, other scripts and punctuation.
_ALPHABET = st.sampled_from(
    [
        *list("abcXYZ019_ -'.,!?\n\t"),
        "中",
        "文",
        "字",
        "一",
        "鿿",
        "龥",
        "㐀",
        "é",
        "ß",
        "́",
        "ア",
        "한",
        "Ω",
        "٣",
        "²",
        "\u200b",
        "\ufeff",
        "😀",
        "—",
        "，",
        "。",
    ]
)


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=60))
def test_count_words_matches_the_oracle_on_edge_alphabet(text: str) -> None:
    assert count_words(text) == oracle(text)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_count_words_matches_the_oracle_on_any_unicode(text: str) -> None:
    assert count_words(text) == oracle(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=_ALPHABET, max_size=40) | st.text(max_size=40), max_size=30))
def test_batch_equals_scalar(texts: list[str]) -> None:
    assert count_words_batch(texts) == [oracle(t) for t in texts]


HAND_COUNTED = [
    ("Hello, world!", 2),
    ("don't", 2),  # the apostrophe splits, as in the paper's regex
    ("route66 is 66 miles", 2),  # "route66" is one \\w run with digits: no match
    ("我爱北京天安门", 7),
    ("写一篇 essay 关于 AI", 3 + 1 + 2 + 1),
    ("中文abc", 2),  # 'abc' follows a \\w CJK char: no word boundary, not counted
    ("café", 0),  # 'caf' is followed by 'é' (a \\w char): no boundary
    ("naïve résumé", 0),
    ("snake_case and under_score_", 1),  # '_' is a word character: only "and" stands alone
    ("e-mail, co-op; U.S.A.", 2 + 2 + 3),  # hyphens and dots split
    ("x\u0301y", 2),  # a combining mark is not a word character: "x" and "y" both stand alone
    ("ＡＢＣ full-width", 2),  # full-width letters are word characters but not ASCII letters
    ("Ω omega", 1),
    ("²squared", 0),  # '²' is numeric, so a word character
    ("tab\tnew\nline", 3),
    ("，。中文！", 2),  # CJK punctuation is not counted, ideographs are
    ("\u4dff\u4e00\u9fff\ua000", 2),  # the range's edges: U+4E00 and U+9FFF only
    ("", 0),
]


def test_hand_counted_cases() -> None:
    assert [(text, count_words(text)) for text, _ in HAND_COUNTED] == HAND_COUNTED
    assert [(text, oracle(text)) for text, _ in HAND_COUNTED] == HAND_COUNTED  # the oracle is right too


def test_detect_language() -> None:
    assert detect_language("写一篇关于春天的散文，不少于3000字") == "zh"
    assert detect_language("Write a 5000-word essay about spring") == "en"
