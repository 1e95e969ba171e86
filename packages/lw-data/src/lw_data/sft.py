"""From AgentWrite documents to SFT chats: join, clean, filter with reasons, write ``messages`` records."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from lw_core import REPETITION_THRESHOLD, count_words
from lw_core.text import TASK_TALK_PATTERN
from pydantic import BaseModel, Field

from lw_data._text import language
from lw_data.io import AtomicFile, iter_jsonl_batches
from lw_data.lengths import fill_lengths, relabel_length

#: The fields of lw-core's ``Document`` that lw-data reads (everything else in a record is ignored).
DOCUMENT_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "instruction": pl.Struct(
        {"prompt": pl.String(), "length": pl.Int64(), "language": pl.String(), "type": pl.String()}
    ),
    "sections": pl.List(pl.Struct({"index": pl.Int64(), "text": pl.String()})),
    "text": pl.String(),
    "status": pl.String(),
}
#: The plan field, read only for plan-augmented answers (``SFTFilters.plan_augmented``).
PLAN_SCHEMA: dict[str, pl.DataType] = {
    "plan": pl.Struct(
        {"steps": pl.List(pl.Struct({"index": pl.Int64(), "main_point": pl.String(), "word_count": pl.Int64()}))}
    )
}

# What a writer model echoes from its instructions at the top of a section: the plan step's label and fields
# ("Paragraph 3 - Main Point: ...", "Word count: 400 words", "段落3：", "第三段：", "字数要求：500字"). Subtitles
# ("## The Moon", "**Section 2:** Tides", "第二部分：结尾") are the writer's own and stay: the paper's write prompt
# invites them and LongWriter-6k's answers carry them.
_EN_LABEL = r"(?i:(?:#+\s*)?(?:\*\*)?\s*paragraph\s+\d+\s*(?:[-–—:.)]|\*\*|$)[^\n]*)"
_EN_FIELD = r"(?i:(?:\*\*)?\s*(?:main point|word count|word limit)\s*(?:\*\*)?\s*[:：][^\n]*)"
_ZH_NUM = r"[\d一二三四五六七八九十]+"
_ZH_LABEL = rf"(?:(?:#+\s*)?(?:段落\s*{_ZH_NUM}|第\s*{_ZH_NUM}\s*段)\s*[-–—:：.、]?[^\n]*)"
_ZH_FIELD = r"(?:(?:主要内容|内容要点|字数要求|字数)\s*[:：][^\n]*)"
_PLAN_ECHO = rf"^(?:[ \t]*(?:{_EN_LABEL}|{_EN_FIELD}|{_ZH_LABEL}|{_ZH_FIELD})[ \t]*(?:\n|$)\s*)+"

# Sentences in which a writer talks about its task instead of doing it (lw-core's pattern, shared with lw-bench's
# RL rewards; measured there: a 135M teacher writes them in 79 of 98 documents, and a student trained on them says
# them back).
_SENTENCE_WITH_TASK = TASK_TALK_PATTERN
_BARE_MARKER = r"(?m)^[ \t]*(?:[-*•]|\d+[.)]|[\"“”]+)?[ \t]*$"
# Section headings: markdown headings and lines that are bold text alone ("## The Moon", "**Tides**", "**Part 2:**").
_HEADING = r"(?m)^[ \t]*(?:#{1,6}[ \t]+[^\n]*|\*\*[^*\n]+\*\*[ \t]*[:：]?|__[^_\n]+__[ \t]*[:：]?)[ \t]*(?:\n|$)"

#: A plan step as a line of the plan a plan-augmented answer starts with: the paper's plan format (its ``plan.txt``),
#: and ours in Chinese (lw-agentwrite's Chinese plan prompt).
PLAN_LINE = {
    "en": "Paragraph {index} - Main Point: {point} - Word Count: {words} words",
    "zh": "段落{index} - 主要内容：{point} - 字数：{words}字",
}
# The start of such a line: "Paragraph 3", "段落3", "第三段" (markdown marks allowed)
_PLAN_LINE_START = re.compile(
    rf"^[ \t]*(?:#+[ \t]*)?(?:\*\*)?[ \t]*(?:paragraph[ \t]*\d+|段落[ \t]*{_ZH_NUM}|第[ \t]*{_ZH_NUM}[ \t]*段)",
    re.IGNORECASE,
)


class SFTFilters(BaseModel):
    """What a document must satisfy to become a training chat. Lengths are in the paper's words."""

    min_words: int = Field(500, ge=0, description="drop shorter responses")
    max_words: int = Field(40_000, ge=1, description="drop longer responses")
    min_length_ratio: float = Field(0.5, ge=0, description="words / requested length, when a length is known")
    max_length_ratio: float = Field(2.0, gt=0)
    max_repetition: float = Field(
        REPETITION_THRESHOLD, ge=0, le=1, description="repeated n-gram ratio above which a text is a loop"
    )
    ngram: int = Field(4, ge=1, le=6)
    keep_truncated: bool = Field(False, description="keep documents AgentWrite marked truncated")
    strip_plan_echo: bool = Field(
        False, description="remove plan-step labels and an echoed prompt at the top of sections (not the paper's)"
    )
    strip_task_talk: bool = Field(
        False, description="remove sentences that talk about the writing task (a rewrite, the plan) (not the paper's)"
    )
    strip_headings: bool = Field(
        False, description="remove section headings: markdown headings and lines of bold text alone (not the paper's)"
    )
    relabel_length: bool = Field(
        False,
        description="hindsight relabelling: the requested length (prompt text and `requested`) set to the words the "
        "answer has, before the ratio filters (not the paper's)",
    )
    plan_augmented: bool = Field(
        False,
        description="the answer is the AgentWrite plan, one line per step, a blank line, then the text (the paper's "
        "plan-augmented variant); documents without a plan are rejected ('missing plan')",
    )
    system_prompt: str | None = None


#: Why a document was rejected, in the order the checks run (a row gets the first that applies).
REASONS = (
    "missing prompt",
    "failed",
    "truncated",
    "empty response",
    "empty section",
    "too short",
    "too long",
    "shorter than requested",
    "longer than requested",
    "repetitive",
)


def documents_frame(raw: pl.DataFrame) -> pl.DataFrame:
    """Flatten ``Document`` records (as read with :data:`DOCUMENT_SCHEMA`) to one row per document."""
    ins = pl.col("instruction")
    prompt = ins.struct.field("prompt")
    frame = raw.select(
        pl.col("id"),
        prompt.str.strip_chars().alias("prompt"),
        ins.struct.field("length").alias("requested"),
        ins.struct.field("language").alias("language"),
        ins.struct.field("type").alias("type"),
        pl.col("status").fill_null("done"),
        pl.col("sections").list.eval(pl.element().struct.field("text")).alias("sections"),
        pl.col("text").fill_null(""),
        *([pl.col("plan").struct.field("steps").alias("plan_steps")] if "plan" in raw.columns else []),
        *([pl.col("_line")] if "_line" in raw.columns else []),
    )
    return frame.with_columns(
        requested=fill_lengths(frame["requested"], frame["prompt"]),
        language=pl.coalesce("language", language(pl.col("prompt"))),
    )


def clean_response(
    sections: pl.Expr,
    text: pl.Expr,
    prompt: pl.Expr,
    *,
    strip_plan_echo: bool = False,
    strip_task_talk: bool = False,
    strip_headings: bool = False,
) -> tuple[pl.Expr, pl.Expr]:
    """The response and whether any section was empty.

    The response is the sections joined by blank lines, as the paper's AgentWrite (``write.py``) joins them, or
    the document's text when there are none; subtitles stay. With ``strip_plan_echo``, what the writer echoed from
    its instructions goes first: plan-step labels at the top of a section and the prompt at the start. With
    ``strip_task_talk``, so do the sentences in which it talks about the task (a section that was only that is
    empty); with ``strip_headings``, its headings (markdown headings, lines of bold text alone).

    >>> frame = pl.DataFrame({"sections": [["Here is a rewritten version of your text:\\n\\nTides rise twice a day. "
    ...     "This paragraph has two main points."]], "text": [""], "prompt": ["Write about tides"]})
    >>> response, _ = clean_response(pl.col("sections"), pl.col("text"), pl.col("prompt"), strip_task_talk=True)
    >>> frame.select(response).item()
    'Tides rise twice a day.'
    """
    e = pl.element()
    clean = _cleaner(strip_plan_echo, strip_task_talk, strip_headings)
    cleaned = sections.list.eval(clean(e))
    has_sections = sections.list.len() > 0
    joined = pl.when(has_sections).then(cleaned.list.join("\n\n")).otherwise(clean(text))
    if strip_plan_echo:
        unechoed = pl.when(prompt.is_not_null() & joined.str.starts_with(prompt)).then(
            joined.str.slice(prompt.str.len_chars())
        )
        # a section that echoed the prompt may carry its label right after the echo
        joined = _strip_plan_echo(unechoed.otherwise(joined).str.strip_chars())
    empty_section = has_sections & cleaned.list.eval((e.str.len_bytes() == 0).any()).list.first()
    return joined, empty_section.fill_null(False)


def _cleaner(strip_plan_echo: bool, strip_task_talk: bool, strip_headings: bool) -> Callable[[pl.Expr], pl.Expr]:
    """What cleans one section (or a document's text without sections)."""

    def clean(col: pl.Expr) -> pl.Expr:
        col = _strip_plan_echo(col) if strip_plan_echo else _strip(col)
        col = _strip_task_talk(col) if strip_task_talk else col
        return _strip_headings(col) if strip_headings else col

    return clean


def _strip(col: pl.Expr) -> pl.Expr:
    return col.str.strip_chars()


def _strip_headings(col: pl.Expr) -> pl.Expr:
    return col.str.replace_all(_HEADING, "").str.replace_all(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n").str.strip_chars()


def plan_text(steps: list[dict[str, object]], language: str = "en", budgets: list[int] | None = None) -> str:
    """The plan a plan-augmented answer starts with: a line per step in the paper's plan format (:data:`PLAN_LINE`);
    a step that is already such a line (the ``paper`` preset keeps each plan line whole) stays as it is.
    ``budgets`` replace the steps' word counts (hindsight relabelling: the words each section has).

    >>> steps = [{"index": 1, "main_point": "Tides and the moon", "word_count": 300},
    ...          {"index": 2, "main_point": "Paragraph 2 - Main Point: Spring tides - Word Count: 200 words"}]
    >>> print(plan_text(steps, budgets=[280]))
    Paragraph 1 - Main Point: Tides and the moon - Word Count: 280 words
    Paragraph 2 - Main Point: Spring tides - Word Count: 200 words
    """
    template = PLAN_LINE.get(language, PLAN_LINE["en"])
    lines = []
    for k, step in enumerate(steps):
        point = str(step.get("main_point") or "").strip()
        words = budgets[k] if budgets is not None and k < len(budgets) else step.get("word_count")
        if _PLAN_LINE_START.match(point) or words is None:
            lines.append(point)
        else:
            lines.append(template.format(index=step.get("index") or k + 1, point=point, words=words))
    return "\n".join(lines)


def split_plan_answer(text: str) -> tuple[str, str]:
    """``(plan, text)`` of a plan-augmented answer: the plan is the run of plan lines it starts with ("Paragraph 1 -
    ...", "段落1 - ...", blank lines between them), the text everything after; an answer that starts with text has
    no plan. How lw scores a plan-augmented model: on the text alone, as the paper evaluates only the writing.

    >>> split_plan_answer("Paragraph 1 - Main Point: tides - Word Count: 50 words\\n\\nThe sea rose.")
    ('Paragraph 1 - Main Point: tides - Word Count: 50 words', 'The sea rose.')
    >>> split_plan_answer("The sea rose.")
    ('', 'The sea rose.')
    """
    lines = text.split("\n")
    end = 0
    for k, line in enumerate(lines):
        if _PLAN_LINE_START.match(line):
            end = k + 1
        elif line.strip():
            break
    return "\n".join(lines[:end]).strip(), "\n".join(lines[end:]).strip()


def _strip_plan_echo(col: pl.Expr) -> pl.Expr:
    return col.str.replace(_PLAN_ECHO, "").str.strip_chars()


def _strip_task_talk(col: pl.Expr) -> pl.Expr:
    """Task-talk sentences out, then the list markers or quotes they leave alone on a line, then extra blank lines."""
    # first at a line's start (its indent kept, the space after it dropped), then mid-line with the space before it
    col = col.str.replace_all(rf"(?m)^([ \t]*){_SENTENCE_WITH_TASK}[ \t]*", "${1}")
    col = col.str.replace_all(_SENTENCE_WITH_TASK, "").str.replace_all(_BARE_MARKER, "")
    return col.str.replace_all(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n").str.strip_chars()


def build_sft(documents: pl.DataFrame, filters: SFTFilters | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Turn flat documents (:func:`documents_frame`) into SFT chats and rejects.

    Returns ``(kept, rejects)``. ``kept`` has ``id``, ``messages`` and ``meta`` (language, type, words, requested,
    repetition) — lw-core's ``SFTRecord``; ``rejects`` has ``id``, ``reason`` and the measures behind it.
    """
    f = filters or SFTFilters()
    cleaning = {"strip_plan_echo": f.strip_plan_echo, "strip_task_talk": f.strip_task_talk,
                "strip_headings": f.strip_headings}  # fmt: skip
    response, empty_section = clean_response(pl.col("sections"), pl.col("text"), pl.col("prompt"), **cleaning)
    extra = {}
    if f.plan_augmented and f.relabel_length:  # the plan's budgets become the words each section has
        extra["section_words"] = pl.col("sections").list.eval(_cleaner(**cleaning)(pl.element()))
    # the streaming engine cleans morsels of rows on every core; the in-memory one runs string ops on one
    frame = (
        documents.lazy()
        .with_columns(response=response, empty_section=empty_section, **extra)
        .collect(engine="streaming")
    )
    from lw_data._kernels import text_measures  # numba loads in ~0.3 s: only when there is work for it

    words, repetition = text_measures(frame["response"], f.ngram)
    frame = frame.with_columns(words=words, repetition=repetition)
    if f.relabel_length:
        frame = _relabelled(frame)
    frame = frame.with_columns(ratio=pl.col("words") / pl.col("requested"))
    status = pl.col("status")
    checks = [
        pl.col("prompt").is_null() | (pl.col("prompt") == ""),
        status == "failed",
        (status == "truncated") & (not f.keep_truncated),
        pl.col("response") == "",
        pl.col("empty_section"),
        pl.col("words") < f.min_words,
        pl.col("words") > f.max_words,
        pl.col("ratio").fill_null(1.0) < f.min_length_ratio,
        pl.col("ratio").fill_null(1.0) > f.max_length_ratio,
        pl.col("repetition") > f.max_repetition,
    ]
    reason: pl.Expr = pl.lit(None, dtype=pl.String)
    for check, name in reversed(list(zip(checks, REASONS, strict=True))):
        reason = pl.when(check).then(pl.lit(name)).otherwise(reason)
    if f.plan_augmented:
        no_plan = pl.col("plan_steps").list.len().fill_null(0) == 0 if "plan_steps" in frame.columns else pl.lit(True)
        reason = reason.fill_null(pl.when(no_plan).then(pl.lit("missing plan")))
    frame = frame.with_columns(reason=reason)
    kept = frame.filter(pl.col("reason").is_null())
    if f.plan_augmented:
        kept = kept.with_columns(response=_with_plan(kept))
    messages = [pl.struct(role=pl.lit("user"), content=pl.col("prompt")),
                pl.struct(role=pl.lit("assistant"), content=pl.col("response"))]  # fmt: skip
    if f.system_prompt:
        messages.insert(0, pl.struct(role=pl.lit("system"), content=pl.lit(f.system_prompt)))
    relabelled = ["requested_original"] if f.relabel_length else []
    kept = kept.select(
        "id",
        messages=pl.concat_list(messages),
        meta=pl.struct("language", "type", "words", "requested", pl.col("repetition").round(4), *relabelled),
    )
    reject_cols = ["id", "reason", "status", "words", "requested", "ratio", "repetition", "prompt"]
    rejects = frame.filter(pl.col("reason").is_not_null()).select(
        *reject_cols, *(["_line"] if "_line" in frame.columns else [])
    )
    if "_line" in rejects.columns:
        rejects = rejects.rename({"_line": "line"})
    return kept, rejects


def _relabelled(frame: pl.DataFrame) -> pl.DataFrame:
    """Hindsight relabelling: each request (``requested`` and its prompt's text) becomes the words written."""
    written = pl.col("words") > 0
    prompts = [
        relabel_length(prompt, words) if prompt and words else prompt
        for prompt, words in zip(frame["prompt"], frame["words"], strict=True)
    ]
    return frame.with_columns(
        requested_original=pl.col("requested"),
        requested=pl.when(written).then(pl.col("words")).otherwise(pl.col("requested")),
        prompt=pl.Series(prompts, dtype=pl.String),
    )


def _with_plan(kept: pl.DataFrame) -> pl.Series:
    """Each answer as its plan, a blank line, then its text (the paper's plan-augmented output)."""
    budgets = kept["section_words"] if "section_words" in kept.columns else None
    answers = []
    for k, (steps, lang, text) in enumerate(zip(kept["plan_steps"], kept["language"], kept["response"], strict=True)):
        counts = [count_words(s) for s in budgets[k]] if budgets is not None else None
        answers.append(f"{plan_text(steps.to_list(), lang or 'en', counts)}\n\n{text}")
    return pl.Series("response", answers, dtype=pl.String)


@dataclass(frozen=True)
class BuildSummary:
    """Counts of one build: how many documents were read, kept, and rejected for each reason."""

    read: int
    kept: int
    rejected: dict[str, int]
    measures: pl.DataFrame  # id, language, type, words, requested of the kept rows (for stats)


def build_sft_file(
    documents: str | os.PathLike[str],
    output: str | os.PathLike[str],
    rejects: str | os.PathLike[str] | None = None,
    filters: SFTFilters | None = None,
    *,
    batch_rows: int = 5_000,
    progress: Callable[[int], None] | None = None,
) -> BuildSummary:
    """Stream a documents JSONL file through :func:`build_sft` in batches into ``output`` (and ``rejects``).

    Both outputs appear only when the whole input was processed (temp files renamed at the end), so a bad line
    at row 90,000 leaves no half-written file behind. ``progress`` is called with the rows done in each batch.
    """
    output = Path(output)
    rejects = Path(rejects) if rejects is not None else output.with_name(output.stem + ".rejects.jsonl")
    read, kept_n = 0, 0
    reasons: dict[str, int] = {}
    measures: list[pl.DataFrame] = []
    with AtomicFile(output) as out, AtomicFile(rejects) as rej:
        schema = DOCUMENT_SCHEMA | PLAN_SCHEMA if filters is not None and filters.plan_augmented else DOCUMENT_SCHEMA
        for raw in iter_jsonl_batches(documents, schema, batch_rows=batch_rows):
            kept, rejected = build_sft(documents_frame(raw), filters)
            kept.write_ndjson(out)
            rejected.write_ndjson(rej)
            read += raw.height
            kept_n += kept.height
            for reason, n in rejected.group_by("reason").len().iter_rows():
                reasons[reason] = reasons.get(reason, 0) + n
            measures.append(
                kept.select("id", pl.col("meta").struct.unnest()).drop("repetition", "requested_original", strict=False)
            )
            if progress is not None:
                progress(raw.height)
    frame = pl.concat(measures) if measures else pl.DataFrame()
    return BuildSummary(read=read, kept=kept_n, rejected=reasons, measures=frame)


def read_documents(path: str | os.PathLike[str]) -> pl.DataFrame:
    """A documents JSONL file (lw-core ``Document`` records, plans included) as the flat frame :func:`build_sft`
    takes."""
    from lw_data.io import read_table

    return documents_frame(read_table(path, DOCUMENT_SCHEMA | PLAN_SCHEMA))
