"""A seeded generator of writing instructions: length-diverse long-writing tasks, or short general requests.

Teaching data for length control wants requested lengths spread evenly on a log scale (as many 150-word tasks
as 1,500-word ones), the length stated the way people state it ("a 1,200-word essay", "in about 800 words",
"1200字左右"), and many kinds of text on concrete topics. The topics and forms (``lw_data._catalog``) are this
toolkit's own, kept apart from LongBench-Write so that a model trained on them can be benchmarked on it.

Generation is sequential from one ``random.Random(seed)``: the same arguments give the same instructions, and
asking for more with the same seed extends the list (the first ``n`` stay the same).
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Literal

import polars as pl
from lw_core import stable_id

from lw_data import _catalog as catalog
from lw_data.errors import DataError

Kind = Literal["long", "general"]
LANGUAGES = ("en", "zh")
_MAX_TRIES = 50  # draws of a long-writing instruction before the catalog counts as exhausted
_SAME_TYPE_TRIES = 10  # draws of one general request type before it counts as run dry


def generate_instructions(
    n: int,
    *,
    seed: int = 0,
    kind: Kind = "long",
    min_words: int = 100,
    max_words: int = 3000,
    languages: Sequence[str] = ("en",),
) -> pl.DataFrame:
    """``n`` distinct instructions as lw-core ``Instruction`` rows: ``id``, ``prompt``, ``length``, ``language``,
    ``type`` and ``meta`` (kind, form, topic, seed, index).

    ``kind="long"``: writing tasks whose requested length (words; characters for Chinese, the paper's unit) is
    drawn log-uniformly from ``min_words``–``max_words``, rounded as people round (to 10 below 300, 50 below
    1,000, 100 below 5,000, 500 above), and stated in the prompt so that :func:`lw_data.extract_length` reads it
    back. ``kind="general"``: short everyday requests (explain, compare, advise, a little arithmetic, a short
    poem) with no length, to mix with the long ones as the paper mixes general chats into its SFT data.
    ``languages`` are drawn from evenly per instruction (``en``, ``zh``).

    >>> from lw_data import extract_length
    >>> rows = generate_instructions(3, seed=0, languages=["en", "zh"])
    >>> rows.height, rows["length"].min() >= 100, rows["length"].max() <= 3000
    (3, True, True)
    >>> [extract_length(p) for p in rows["prompt"]] == rows["length"].to_list()
    True
    >>> generate_instructions(2, seed=0, kind="general")["length"].to_list()
    [None, None]
    """
    if n < 0:
        raise DataError(f"n must be 0 or more, got {n}")
    if not 1 <= min_words <= max_words:
        raise DataError(f"need 1 <= min_words <= max_words, got {min_words} and {max_words}")
    unknown = [lang for lang in languages if lang not in LANGUAGES]
    if unknown or not languages:
        raise DataError(f"languages must be some of {', '.join(LANGUAGES)}, got {', '.join(languages) or 'none'}")
    if kind not in ("long", "general"):
        raise DataError(f"kind must be 'long' or 'general', got {kind!r}")
    rng = random.Random(seed)
    seen: set[str] = set()  # normalised prompts: no exact or near duplicates
    used: set[tuple[str, str, str]] = set()  # (language, form, topic): fresh topics first
    dry: set[tuple[str, str]] = set()  # (language, general request type) with nothing new left
    rows = []
    for index in range(n):
        language = rng.choice(list(languages))
        if kind == "long":
            drawn = _draw_long(rng, language, min_words, max_words, seen, used)
        else:
            drawn = _draw_general(rng, language, seen, dry)
        if drawn is None:
            raise DataError(
                f"only {index} distinct {kind} instructions in {'/'.join(languages)} could be generated; ask for fewer"
            )
        length, form, topic, prompt = drawn
        seen.add(_normalize(prompt))
        used.add((language, form, topic))
        meta = {"kind": kind, "form": form, "topic": topic, "seed": seed, "index": index}
        rows.append(
            {"id": stable_id(prompt), "prompt": prompt, "length": length, "language": language, "type": form}
            | {"meta": meta}
        )
    schema: dict[str, pl.DataType] = {
        "id": pl.String(),
        "prompt": pl.String(),
        "length": pl.Int64(),
        "language": pl.String(),
        "type": pl.String(),
        "meta": pl.Struct(
            {"kind": pl.String, "form": pl.String, "topic": pl.String, "seed": pl.Int64, "index": pl.Int64}
        ),
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


Drawn = tuple[int | None, str, str, str]  # requested length, form (type), topic, prompt


def _draw_long(
    rng: random.Random, language: str, lo: int, hi: int, seen: set[str], used: set[tuple[str, str, str]]
) -> Drawn | None:
    for _ in range(_MAX_TRIES):
        length = _length(rng, lo, hi)
        form, topic, prompt = _long(rng, language, length, used)
        if _normalize(prompt) not in seen:
            return length, form, topic, prompt
    return None


def _draw_general(rng: random.Random, language: str, seen: set[str], dry: set[tuple[str, str]]) -> Drawn | None:
    """A request of a random type; a type that gives nothing new in a few draws has run dry and is left out."""
    makers = [m for m in (_GENERAL_EN if language == "en" else _GENERAL_ZH) if (language, m[0]) not in dry]
    while makers:
        form, make = rng.choice(makers)
        for _ in range(_SAME_TYPE_TRIES):
            topic, prompt = make(rng)
            if _normalize(prompt) not in seen:
                return None, form, topic, prompt
        dry.add((language, form))
        makers = [m for m in makers if m[0] != form]
    return None


def _length(rng: random.Random, lo: int, hi: int) -> int:
    """Log-uniform in [lo, hi], rounded to a step people use for that size, and kept in range."""
    raw = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    step = 10 if raw < 300 else 50 if raw < 1000 else 100 if raw < 5000 else 500
    value = round(raw / step) * step
    if value < lo:
        value += step * math.ceil((lo - value) / step)
    if value > hi:
        value -= step * math.ceil((value - hi) / step)
    return value if lo <= value <= hi else round(raw)


def _pick_form(rng: random.Random, forms: Sequence[catalog.Form], length: int) -> catalog.Form:
    """A kind of topic by :data:`~lw_data._catalog.TOPIC_WEIGHTS`, then one of its forms that fits ``length``."""
    fitting = [f for f in forms if f.lo <= length <= f.hi] or list(forms)
    kinds = sorted({f.topics for f in fitting}, key=list(catalog.TOPIC_WEIGHTS).index)
    kind = rng.choices(kinds, weights=[catalog.TOPIC_WEIGHTS[k] for k in kinds])[0]
    return rng.choice([f for f in fitting if f.topics == kind])


def _pick_topic(rng: random.Random, language: str, form: catalog.Form, used: set[tuple[str, str, str]]) -> str:
    topics = (catalog.TOPICS_EN if language == "en" else catalog.TOPICS_ZH)[form.topics]
    fresh = [t for t in topics if (language, form.type, t) not in used]
    return rng.choice(fresh or list(topics))


def _long(rng: random.Random, language: str, length: int, used: set[tuple[str, str, str]]) -> tuple[str, str, str]:
    forms = catalog.FORMS_EN if language == "en" else catalog.FORMS_ZH
    form = _pick_form(rng, forms, length)
    topic = _pick_topic(rng, language, form, used)
    head = rng.choice(form.heads)
    prompt = _english(rng, form, head, topic, length) if language == "en" else _chinese(rng, head, topic, length)
    return form.type, topic, prompt


# --- English ------------------------------------------------------------------------------------------------------

_VERBS = ("Write", "Please write", "Compose")


def _an(word: str) -> str:
    """The indefinite article for a word or a number as spoken (an 800-word essay, an e-reader, a 1,100-word one)."""
    digits = word.replace(",", "")
    if digits.isdigit():
        spoken_vowel = digits.startswith("8") or (len(digits) in (2, 5) and digits[:2] in ("11", "18"))
        return "an" if spoken_vowel else "a"
    return "an" if word[:1].lower() in "aeio" or word.lower().startswith(("hour", "honest")) else "a"


def _number(rng: random.Random, length: int) -> str:
    return f"{length:,}" if length >= 1000 and rng.random() < 0.5 else str(length)


def _english(rng: random.Random, form: catalog.Form, head: str, topic: str, length: int) -> str:
    """One English prompt: a frame stating the length, the form with its topic, maybe an audience or a note."""
    what = head.format(x=topic)
    if form.topics in ("subject", "activity", "product") and rng.random() < 0.35:
        what += f" for {rng.choice(catalog.AUDIENCES_EN)}"
    number = _number(rng, length)
    if length % 1000 == 0 and length <= 10_000 and rng.random() < 0.15:
        spelled = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")[length // 1000 - 1]
        number = f"{spelled} thousand"
    verb = rng.choice(_VERBS)
    a = _an(what)
    frames: list[Callable[[], str]] = [
        lambda: f"{verb} {a} {what} in about {number} words.",
        lambda: f"{verb} {a} {what}. It should be around {number} words long.",
        lambda: f"{verb} {a} {what}, approximately {number} words.",
        lambda: f"I need {a} {what}. Please keep it to roughly {number} words.",
        lambda: f"{verb} {a} {what} ({number} words).",
        lambda: f"Can you write {a} {what}? Length: about {number} words.",
        lambda: f"{verb} {a} {what}. It should be at least {number} words long.",
    ]
    if " " not in number:  # "a 1,200-word essay" reads well only with digits
        frames.append(lambda: f"{verb} {_an(number)} {number}-word {what}.")
        frames.append(lambda: f"{verb} {_an(number)} {number}-word {what}.")  # the most common way: twice as likely
    prompt = rng.choice(frames)()
    if form.topics == "premise" and rng.random() < 0.4:
        prompt += " " + rng.choice(catalog.STORY_NOTES_EN)
    return prompt


# --- Chinese ------------------------------------------------------------------------------------------------------

_ZH_DIGITS = "零一二三四五六七八九"


def _chinese_numeral(value: int) -> str:
    """1200 → 一千二百, 2000 → 两千, 350 → 三百五十 (for whole hundreds and tens below 10,000)."""
    parts, zero = [], False
    for unit, name in ((1000, "千"), (100, "百"), (10, "十")):
        digit, value = divmod(value, unit)
        if digit:
            if zero:
                parts.append("零")
            word = "两" if digit == 2 and unit >= 1000 else _ZH_DIGITS[digit]
            parts.append(word + name)
            zero = False
        elif parts:
            zero = True
    return "".join(parts)


def _chinese(rng: random.Random, head: str, topic: str, length: int) -> str:
    count = str(length)
    if length % 100 == 0 and length < 10_000 and rng.random() < 0.2:
        count = _chinese_numeral(length)
    if "{n}的" in head:  # before 的: "写一篇1200字左右的…"
        phrase = rng.choice((f"{count}字左右", f"约{count}字", f"{count}字", f"不少于{count}字"))
    else:
        phrase = rng.choice((f"{count}字左右", f"约{count}字", f"字数要求：{count}字", f"字数在{count}字左右"))
    return head.format(x=topic, n=phrase)


# --- general requests ---------------------------------------------------------------------------------------------
# Each maker returns (topic, prompt). Slots multiply (frames × topics × modifiers), so that thousands of distinct
# requests exist per language without any one type crowding out the others.


def _explain_en(rng: random.Random) -> tuple[str, str]:
    c = rng.choice(catalog.CONCEPTS_EN)
    frames = (
        "Explain {c} in simple terms.",
        "Can you explain {c} to someone new to it?",
        "In a few sentences, explain {c}.",
        "Explain {c} with an everyday example.",
        "How would you explain {c} to a ten-year-old?",
        "I keep hearing about {c}. What is it, briefly?",
    )
    return c, rng.choice(frames).format(c=c)


def _compare_en(rng: random.Random) -> tuple[str, str]:
    a, b = rng.choice(catalog.PAIRS_EN)
    frames = (
        "What is the difference between {a} and {b}?",
        "How is {a} different from {b}?",
        "Compare {a} and {b} in a short table.",
        "People often confuse {a} and {b}. How do I tell them apart?",
    )
    return f"{a} / {b}", rng.choice(frames).format(a=a, b=b)


def _tips_en(rng: random.Random) -> tuple[str, str]:
    habit = rng.choice(catalog.HABITS_EN)
    k = rng.choice(("three", "four", "five", "a few"))
    who = rng.choice(("", "", " as a student", " on a tight budget", " as a busy parent", " as a beginner"))
    frame = rng.choice(("Give me {k} tips for {h}{w}.", "What are {k} good habits for {h}{w}?"))
    return habit, frame.format(k=k, h=habit, w=who)


def _howto_en(rng: random.Random) -> tuple[str, str]:
    task = rng.choice(catalog.TASKS_EN)
    frames = (
        "How do I {t}?",
        "What is the best way to {t}?",
        "Walk me through how to {t}.",
        "Quick question: how can I {t}?",
    )
    return task, rng.choice(frames).format(t=task)


def _rewrite_en(rng: random.Random) -> tuple[str, str]:
    sentence, tone = rng.choice(catalog.SENTENCES_EN), rng.choice(catalog.TONES_EN)
    frame = rng.choice(('Rewrite this sentence to sound {t}: "{s}"', 'Make this {t}: "{s}"'))
    return sentence, frame.format(t=tone, s=sentence)


def _names_en(rng: random.Random) -> tuple[str, str]:
    thing = rng.choice(catalog.THINGS_EN)
    k = rng.choice(("three", "five", "a few", "ten"))
    style = rng.choice(("", "", " that are short and catchy", " with a bit of humour", " that sound old-fashioned"))
    return thing, f"Suggest {k} names for {thing}{style}."


def _poem_en(rng: random.Random) -> tuple[str, str]:
    subject = rng.choice(catalog.POEM_SUBJECTS_EN)
    form = rng.choice(("haiku", "limerick", "short rhyming poem", "four-line poem"))
    mood = rng.choice(("", "", "cheerful ", "melancholy ", "funny "))
    return subject, f"Write a {mood}{form} about {subject}."


def _book_en(rng: random.Random) -> tuple[str, str]:
    book = rng.choice(catalog.BOOKS_EN)
    frames = (
        "Summarise the plot of {b} in a few sentences.",
        "Who are the main characters in {b}?",
        "What are the main themes of {b}?",
        "Why is {b} considered a classic?",
        "Would {b} suit a reader of thirteen? Why or why not?",
    )
    return book, rng.choice(frames).format(b=book)


def _myth_en(rng: random.Random) -> tuple[str, str]:
    myth = rng.choice(catalog.MYTHS_EN)
    frame = rng.choice(("Is it true that {m}?", "My friend says {m}. Is that right?", "Fact or myth: {m}?"))
    return myth, frame.format(m=myth)


def _arithmetic_en(rng: random.Random) -> tuple[str, str]:
    which = rng.randrange(4)
    if which == 0:
        price, count = rng.randint(15, 95), rng.randint(3, 40)
        item = rng.choice(("pencils", "stamps", "apples", "postcards", "bread rolls"))
        return "unit price", f"A shop sells {item} at {price} cents each. How much do {count} {item} cost?"
    if which == 1:
        hours = rng.randint(2, 9)
        distance = hours * rng.randint(40, 160) + rng.choice((0, 15, 30))
        vehicle = rng.choice(("train", "coach", "ferry", "cyclist"))
        return (
            "average speed",
            f"A {vehicle} travels {distance} kilometres in {hours} hours. What is its average speed?",
        )
    if which == 2:
        serves, grams, guests = rng.choice((2, 4, 6)), rng.randrange(150, 600, 25), rng.randint(3, 12)
        return "scaling a recipe", (
            f"A recipe for {serves} people needs {grams} grams of flour. How much flour do I need for {guests} people?"
        )
    percent, base = rng.choice((5, 12, 15, 20, 25, 35, 40, 75)), rng.randrange(40, 2000, 20)
    return "percentage", f"What is {percent}% of {base}? Show how you work it out."


def _explain_zh(rng: random.Random) -> tuple[str, str]:
    c = rng.choice(catalog.CONCEPTS_ZH)
    frames = ("用通俗的话解释一下{c}。", "请简单介绍一下{c}。", "举个生活中的例子，说明{c}。", "怎样向小学生解释{c}？")
    return c, rng.choice(frames).format(c=c)


def _compare_zh(rng: random.Random) -> tuple[str, str]:
    a, b = rng.choice(catalog.PAIRS_ZH)
    frames = ("{a}和{b}有什么区别？", "怎样区分{a}和{b}？", "{a}与{b}是一回事吗？")
    return f"{a} / {b}", rng.choice(frames).format(a=a, b=b)


def _tips_zh(rng: random.Random) -> tuple[str, str]:
    habit = rng.choice(catalog.HABITS_ZH)
    k = rng.choice(("三", "四", "五", "几"))
    who = rng.choice(("", "", "我是学生，", "我是上班族，", "我是新手，"))
    return habit, f"{who}关于{habit}，给我{k}条建议。"


def _howto_zh(rng: random.Random) -> tuple[str, str]:
    task = rng.choice(catalog.TASKS_ZH)
    return task, rng.choice(("怎样{t}？", "{t}有什么好方法？", "请一步一步告诉我如何{t}。")).format(t=task)


def _names_zh(rng: random.Random) -> tuple[str, str]:
    thing = rng.choice(catalog.THINGS_ZH)
    style = rng.choice(("", "简短好记的", "有趣的", "文雅一点的"))
    return thing, f"帮{thing}想{rng.choice(('三', '五', '几'))}个{style}名称。"


def _poem_zh(rng: random.Random) -> tuple[str, str]:
    subject = rng.choice(catalog.POEM_SUBJECTS_ZH)
    mood = rng.choice(("", "轻快的", "伤感的", "幽默的"))
    return subject, f"写一首关于{subject}的{mood}{rng.choice(('小诗', '打油诗', '现代诗'))}。"


def _arithmetic_zh(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.5:
        item, unit = rng.choice((("铅笔", "支"), ("苹果", "个"), ("笔记本", "本"), ("面包", "个")))
        price, count = rng.randint(2, 9), rng.randint(3, 40)
        return "unit price", f"一{unit}{item}{price}元，买{count}{unit}一共要多少钱？"
    hours = rng.randint(2, 9)
    distance = hours * rng.randint(40, 300)
    vehicle = rng.choice(("一列火车", "一辆汽车", "一艘轮船"))
    return "average speed", f"{vehicle}{hours}小时行驶了{distance}公里，它的平均速度是多少？"


_GENERAL_EN: tuple[tuple[str, Callable[[random.Random], tuple[str, str]]], ...] = (
    ("explain", _explain_en),
    ("compare", _compare_en),
    ("advice", _tips_en),
    ("how-to", _howto_en),
    ("rewrite", _rewrite_en),
    ("brainstorm", _names_en),
    ("poem", _poem_en),
    ("books", _book_en),
    ("fact check", _myth_en),
    ("arithmetic", _arithmetic_en),
)
_GENERAL_ZH: tuple[tuple[str, Callable[[random.Random], tuple[str, str]]], ...] = (
    ("explain", _explain_zh),
    ("compare", _compare_zh),
    ("advice", _tips_zh),
    ("how-to", _howto_zh),
    ("brainstorm", _names_zh),
    ("poem", _poem_zh),
    ("arithmetic", _arithmetic_zh),
)


def _normalize(text: str) -> str:
    """NFKC, lower case, no punctuation, single spaces: what makes two prompts near duplicates."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    return re.sub(r"\s+", " ", text).strip()
