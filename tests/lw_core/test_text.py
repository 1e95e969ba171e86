import re

from hypothesis import given, settings
from hypothesis import strategies as st
from lw_core import count_words, count_words_batch, detect_language


def reference(text: str) -> int:
    return len(re.findall(r"[\u4e00-\u9fff]", text)) + len(re.findall(r"\b[a-zA-Z]+\b", text))


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
def test_count_words_matches_definition_on_edge_alphabet(text: str) -> None:
    assert count_words(text) == reference(text)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_count_words_matches_definition_on_any_unicode(text: str) -> None:
    assert count_words(text) == reference(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=_ALPHABET, max_size=40) | st.text(max_size=40), max_size=30))
def test_batch_equals_scalar(texts: list[str]) -> None:
    assert count_words_batch(texts) == [reference(t) for t in texts]


def test_hand_counted_cases() -> None:
    assert count_words("Hello, world!") == 2
    assert count_words("don't") == 2  # the apostrophe splits, as in the paper's regex
    assert count_words("route66 is 66 miles") == 2  # "route66" is one \w run with digits: no match
    assert count_words("我爱北京天安门") == 7
    assert count_words("写一篇 essay 关于 AI") == 3 + 1 + 2 + 1
    assert count_words("中文abc") == 2  # 'abc' follows a \w CJK char: no word boundary, not counted
    assert count_words("café") == 0  # 'caf' is followed by 'é' (a \w char): no boundary
    assert count_words("") == 0


def test_detect_language() -> None:
    assert detect_language("写一篇关于春天的散文，不少于3000字") == "zh"
    assert detect_language("Write a 5000-word essay about spring") == "en"
