"""From AgentWrite documents to SFT chats: join, clean, filter with reasons, write ``messages`` records."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from lw_core import REPETITION_THRESHOLD
from lw_core.text import TASK_TALK_PATTERN
from pydantic import BaseModel, Field

from lw_data._text import language
from lw_data.io import AtomicFile, iter_jsonl_batches
from lw_data.lengths import fill_lengths

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
) -> tuple[pl.Expr, pl.Expr]:
    """The response and whether any section was empty.

    The response is the sections joined by blank lines, as the paper's AgentWrite (``write.py``) joins them, or
    the document's text when there are none; subtitles stay. With ``strip_plan_echo``, what the writer echoed from
    its instructions goes first: plan-step labels at the top of a section and the prompt at the start. With
    ``strip_task_talk``, so do the sentences in which it talks about the task (a section that was only that is
    empty).

    >>> frame = pl.DataFrame({"sections": [["Here is a rewritten version of your text:\\n\\nTides rise twice a day. "
    ...     "This paragraph has two main points."]], "text": [""], "prompt": ["Write about tides"]})
    >>> response, _ = clean_response(pl.col("sections"), pl.col("text"), pl.col("prompt"), strip_task_talk=True)
    >>> frame.select(response).item()
    'Tides rise twice a day.'
    """
    e = pl.element()

    def clean(col: pl.Expr) -> pl.Expr:
        col = _strip_plan_echo(col) if strip_plan_echo else _strip(col)
        return _strip_task_talk(col) if strip_task_talk else col

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


def _strip(col: pl.Expr) -> pl.Expr:
    return col.str.strip_chars()


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
    response, empty_section = clean_response(
        pl.col("sections"),
        pl.col("text"),
        pl.col("prompt"),
        strip_plan_echo=f.strip_plan_echo,
        strip_task_talk=f.strip_task_talk,
    )
    # the streaming engine cleans morsels of rows on every core; the in-memory one runs string ops on one
    frame = documents.lazy().with_columns(response=response, empty_section=empty_section).collect(engine="streaming")
    from lw_data._kernels import text_measures  # numba loads in ~0.3 s: only when there is work for it

    words, repetition = text_measures(frame["response"], f.ngram)
    frame = frame.with_columns(words=words, repetition=repetition).with_columns(ratio=words / pl.col("requested"))
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
    frame = frame.with_columns(reason=reason)
    kept = frame.filter(pl.col("reason").is_null())
    messages = [pl.struct(role=pl.lit("user"), content=pl.col("prompt")),
                pl.struct(role=pl.lit("assistant"), content=pl.col("response"))]  # fmt: skip
    if f.system_prompt:
        messages.insert(0, pl.struct(role=pl.lit("system"), content=pl.lit(f.system_prompt)))
    kept = kept.select(
        "id",
        messages=pl.concat_list(messages),
        meta=pl.struct("language", "type", "words", "requested", pl.col("repetition").round(4)),
    )
    reject_cols = ["id", "reason", "status", "words", "requested", "ratio", "repetition", "prompt"]
    rejects = frame.filter(pl.col("reason").is_not_null()).select(
        *reject_cols, *(["_line"] if "_line" in frame.columns else [])
    )
    if "_line" in rejects.columns:
        rejects = rejects.rename({"_line": "line"})
    return kept, rejects


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
        for raw in iter_jsonl_batches(documents, DOCUMENT_SCHEMA, batch_rows=batch_rows):
            kept, rejected = build_sft(documents_frame(raw), filters)
            kept.write_ndjson(out)
            rejected.write_ndjson(rej)
            read += raw.height
            kept_n += kept.height
            for reason, n in rejected.group_by("reason").len().iter_rows():
                reasons[reason] = reasons.get(reason, 0) + n
            measures.append(kept.select("id", pl.col("meta").struct.unnest()).drop("repetition"))
            if progress is not None:
                progress(raw.height)
    frame = pl.concat(measures) if measures else pl.DataFrame()
    return BuildSummary(read=read, kept=kept_n, rejected=reasons, measures=frame)


def read_documents(path: str | os.PathLike[str]) -> pl.DataFrame:
    """A documents JSONL file (lw-core ``Document`` records) as the flat frame :func:`build_sft` takes."""
    from lw_data.io import read_table

    return documents_frame(read_table(path, DOCUMENT_SCHEMA))
