"""Turn a model's plan reply into a :class:`lw_core.Plan`, however loosely it followed the format.

The paper asks for ``Paragraph N - Main Point: ... - Word Count: N words``. Real models add
preambles, markdown bullets and bold, en/em dashes, ``Section 3:`` headers, numbered lists, counts
on a separate line or none at all, and Chinese plans (``段落1 - 主要内容：... - 字数：500字``).
The parser finds step headers first, groups the lines that belong to each, then reads the main
point and the word budget out of each group. JSON plans (``{"steps": [...]}`` or a list) are read
directly.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lw_core import Plan, PlanStep

from lw_agentwrite.errors import PlanParseError

_CN_NUM = "一二三四五六七八九十百零〇两"
# "Paragraph 3", "Section 3:", "Part 3", "Step 3", "段落3", "第三段", "第3部分" ...
_KEYWORD_HEADER = re.compile(
    r"^(?:(?:paragraph|para|section|part|step|chapter|segment)\s*(?:no\.?\s*)?(\d+)\b"
    rf"|(?:段落|段|部分|章节|小节)\s*([\d{_CN_NUM}]+)"
    rf"|第\s*([\d{_CN_NUM}]+)\s*(?:段落|段|部分|节|章|点))",
    re.IGNORECASE,
)
# "1.", "1)", "(1)", "1、", "1:" at the start of a line (not "1,200 words" or "1.5")
_LIST_HEADER = re.compile(r"^\(?(\d{1,3})(?:[.)、:：](?!\d)|\s+-\s)")
_MARKUP = re.compile(r"^\s*(?:[#>]+\s*|[-*•+·]\s+|\*\*|__)*")
_MAIN_LABEL = re.compile(
    r"(?:main\s*points?|key\s*points?|main\s*idea|content|topic|focus|主要内容|内容|主要观点|要点|主旨|主题)"
    r"\s*[:：]\s*",
    re.IGNORECASE,
)
_COUNT_LABEL = re.compile(
    r"(?:word\s*count|words?|length|budget|字数|篇幅|长度)\s*[:：]\s*(?:about|approx\.?|approximately|around|~|约|大约)?\s*"
    r"(\d[\d,]*)(?:\s*(?:-|–|—|~|to|至|到)\s*(\d[\d,]*))?",
    re.IGNORECASE,
)
_COUNT_UNIT = re.compile(
    r"(?:about|approx\.?|approximately|around|~|约|大约)?\s*(\d[\d,]*)(?:\s*(?:-|–|—|~|to|至|到)\s*(\d[\d,]*))?"
    r"\s*(?:words?\b|个?字|词)",
    re.IGNORECASE,
)
_TOTAL_LINE = re.compile(r"^(?:total|overall|in total|sum|总字数|总计|合计|共计)", re.IGNORECASE)
_SEPARATORS = " \t-–—:：|,，;；()（）[]【】*_"


def parse_plan(text: str) -> Plan:
    """Parse a plan reply into steps numbered 1..n, with ``word_count`` None where the plan gave none.

    >>> plan = parse_plan("Paragraph 1 - Main Point: Why tides exist - Word Count: 300 words\\n"
    ...                   "Paragraph 2 - Main Point: Spring and neap tides - Word Count: 400 words")
    >>> [(s.index, s.main_point, s.word_count) for s in plan.steps]
    [(1, 'Why tides exist', 300), (2, 'Spring and neap tides', 400)]

    Raises :class:`PlanParseError` when no step can be recovered.
    """
    steps = _parse_json(text)
    if steps is None:
        steps = _parse_lines(text)
    if not steps:
        preview = text.strip().replace("\n", " ")[:120]
        raise PlanParseError(
            f"no plan step found in the model's reply ({len(text)} chars: {preview!r}); expected lines like "
            "'Paragraph 1 - Main Point: ... - Word Count: 300 words'. Retry, or check the plan prompt and model."
        )
    return Plan(steps=steps, raw=text)


def split_plan(text: str) -> Plan:
    """The original's plan handling: every line of the reply (stripped, blank lines removed once) is one step.

    THUDM/LongWriter's ``write.py`` does ``plan.strip().replace('\\n\\n', '\\n').split('\\n')`` and writes one
    section per line, whatever the line says; each step keeps its line as ``main_point`` (so the plan text can be
    rebuilt exactly) and the budget the line names, if any, as ``word_count`` (for reports; the prompt does not
    use it).

    >>> [(s.index, s.main_point, s.word_count) for s in split_plan("Intro - 300 words\\n\\nBody - 500 words\\n").steps]
    [(1, 'Intro - 300 words', 300), (2, 'Body - 500 words', 500)]
    """
    lines = text.strip().replace("\n\n", "\n").split("\n")
    steps = [PlanStep(index=n, main_point=line, word_count=_find_count(line)) for n, line in enumerate(lines, 1)]
    return Plan(steps=steps, raw=text)


def _parse_json(text: str) -> list[PlanStep] | None:
    stripped = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", stripped, re.DOTALL)
    if fenced:
        stripped = fenced.group(1).strip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        data: Any = json.loads(stripped)
    except json.JSONDecodeError:
        return None
    if isinstance(data, dict):
        data = next(
            (data[k] for k in ("steps", "paragraphs", "sections", "plan") if isinstance(data.get(k), list)), None
        )
    if not isinstance(data, list):
        return None
    steps: list[PlanStep] = []
    for item in data:
        if not isinstance(item, dict):
            continue
        point = next((item[k] for k in ("main_point", "main point", "point", "content", "title") if item.get(k)), None)
        if not isinstance(point, str) or not point.strip():
            continue
        count = next((item[k] for k in ("word_count", "words", "word count", "length") if k in item), None)
        steps.append(PlanStep(index=len(steps) + 1, main_point=point.strip(), word_count=_as_count(count)))
    return steps


def _as_count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value >= 0:
        return int(value)
    if isinstance(value, str):
        match = re.search(r"\d[\d,]*", value)
        return int(match.group().replace(",", "")) if match else None
    return None


def _clean(line: str) -> str:
    line = _MARKUP.sub("", line.strip())
    return line.replace("**", "").replace("__", "").strip()


def _parse_lines(text: str) -> list[PlanStep]:
    lines = [_clean(raw) for raw in text.splitlines()]
    keyword = [i for i, line in enumerate(lines) if _KEYWORD_HEADER.match(line)]
    starts = keyword or [i for i, line in enumerate(lines) if _LIST_HEADER.match(line)]
    header = _KEYWORD_HEADER if keyword else _LIST_HEADER
    steps: list[PlanStep] = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        head = header.sub("", lines[start], count=1)
        body: list[str] = []
        for line in lines[start + 1 : end]:
            if _TOTAL_LINE.match(line):
                break
            if not line:
                if body:  # a blank line after the step's own lines ends it (postambles follow)
                    break
                continue
            body.append(line)
        step = _read_step(head, body)
        if step is not None:
            point, count = step
            steps.append(PlanStep(index=len(steps) + 1, main_point=point, word_count=count))
    return steps


def _read_step(head: str, body: list[str]) -> tuple[str, int | None] | None:
    block = " - ".join([head.strip(_SEPARATORS), *body]) if body else head
    count = _find_count(block)
    main = _MAIN_LABEL.search(block)
    point = block[main.end() :] if main else block
    point = _COUNT_LABEL.split(point, maxsplit=1)[0]
    point = _strip_count(point)
    point = re.sub(r"\s+", " ", point).strip(_SEPARATORS + "。.")
    if not point and body:
        point = _strip_count(" ".join(body)).strip(_SEPARATORS)
    if not point:
        return None
    return point, count


def _find_count(block: str) -> int | None:
    match = _COUNT_LABEL.search(block) or _COUNT_UNIT.search(block)
    if not match:
        return None
    low = int(match.group(1).replace(",", ""))
    high = int(match.group(2).replace(",", "")) if match.group(2) else low
    return (low + high) // 2


def _strip_count(point: str) -> str:
    """Drop a trailing budget such as ``(300 words)``, ``- 300 words`` or ``约500字`` from a main point."""
    point = re.sub(r"[\(（\[【]\s*" + _COUNT_UNIT.pattern + r"\s*[\)）\]】]", "", point, flags=re.IGNORECASE)
    point = re.sub(r"[-–—:：,，]?\s*" + _COUNT_UNIT.pattern + r"\s*$", "", point.strip(), flags=re.IGNORECASE)
    return point
