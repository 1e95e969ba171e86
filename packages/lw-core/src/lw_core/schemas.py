"""Records that flow between the stages; every file between stages is JSONL of one of these.

Records carry a stable ``id`` (a hash of the prompt text) so they join across stages.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lw_core.text import count_words, detect_language

Language = Literal["en", "zh"]
Role = Literal["system", "user", "assistant", "tool"]

#: The six quality dimensions of LongBench-Write, spelled as the paper spells them.
DIMENSIONS: tuple[str, ...] = (
    "Relevance",
    "Accuracy",
    "Coherence",
    "Clarity",
    "Breadth and Depth",
    "Reading Experience",
)


def stable_id(text: str) -> str:
    """A short, stable hash of a prompt: the join key across stages (surrounding whitespace does not count).

    >>> stable_id("Write a story about a fox.") == stable_id("  Write a story about a fox.\\n")
    True
    >>> len(stable_id("Write a story about a fox."))
    16
    """
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:16]


class Record(BaseModel):
    """Base of every record: unknown fields from other tools are ignored, not fatal."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _WithPromptId(Record):
    @model_validator(mode="before")
    @classmethod
    def _fill_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("id") and isinstance(data.get("prompt"), str):
            data = {**data, "id": stable_id(data["prompt"])}
        return data


class Usage(Record):
    """Token accounting of one or more LLM calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    calls: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            calls=self.calls + other.calls,
        )

    @property
    def cached_fraction(self) -> float | None:
        """Share of prompt tokens served from the server's prefix cache (None if unknown)."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else None


class Instruction(_WithPromptId):
    """A writing task. ``length`` is the required output length in words (characters for zh).

    ``id`` and ``language`` are filled from the prompt when missing, so user files need only ``prompt``:

    >>> task = Instruction(prompt="写一篇关于秋天的散文", length=800)
    >>> task.language, task.id == stable_id(task.prompt)
    ('zh', True)
    """

    id: str = ""
    prompt: str
    length: int | None = Field(default=None, ge=1)
    language: Language | None = None
    type: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fill_language(self) -> Instruction:
        if self.language is None:
            self.language = detect_language(self.prompt)
        return self


class PlanStep(Record):
    """One numbered section of a plan: what it says and how many words it gets."""

    index: int = Field(ge=1)
    main_point: str
    word_count: int | None = Field(default=None, ge=0)


class Plan(Record):
    """AgentWrite's plan for one instruction; ``meta`` says where a plan came from when not from the planner (e.g.
    ``{"source": "fallback"}``)."""

    instruction_id: str = ""
    steps: list[PlanStep]
    raw: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def total_words(self) -> int:
        return sum(s.word_count or 0 for s in self.steps)


class Section(Record):
    """One written section of a document."""

    index: int = Field(ge=1)
    text: str
    word_count: int = 0
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    attempts: int = 1


FinishStatus = Literal["done", "truncated", "failed"]


class Document(Record):
    """AgentWrite's output for one instruction: the plan, its sections, and the joined text."""

    id: str
    instruction: Instruction
    plan: Plan | None = None
    sections: list[Section] = Field(default_factory=list)
    text: str = ""
    word_count: int = 0
    status: FinishStatus = "done"
    error: str | None = None
    model: str | None = None
    usage: Usage = Field(default_factory=Usage)
    elapsed_s: float = 0.0

    @model_validator(mode="after")
    def _fill_counts(self) -> Document:
        if self.text and not self.word_count:
            self.word_count = count_words(self.text)
        return self


class ChatMessage(Record):
    role: Role
    content: str


#: A chat message as a record or as the plain ``{"role": ..., "content": ...}`` dict the OpenAI API takes.
MessageLike = ChatMessage | dict[str, str]


class SFTRecord(Record):
    """A chat in the ``messages`` format that TRL's SFTTrainer and ``datasets`` read."""

    id: str = ""
    messages: list[ChatMessage]
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fill_id(self) -> SFTRecord:
        if not self.id:
            first_user = next((m.content for m in self.messages if m.role == "user"), "")
            self.id = stable_id(first_user)
        return self


class PreferencePair(Record):
    """A DPO pair in TRL's conversational ``prompt``/``chosen``/``rejected`` format."""

    id: str = ""
    prompt: list[ChatMessage]
    chosen: list[ChatMessage]
    rejected: list[ChatMessage]
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fill_id(self) -> PreferencePair:
        if not self.id:
            self.id = stable_id(next((m.content for m in self.prompt if m.role == "user"), ""))
        return self


class BenchItem(_WithPromptId):
    """A LongBench-Write or LongWrite-Ruler prompt with its required length."""

    id: str = ""
    prompt: str
    type: str | None = None
    length: int = Field(ge=1)
    language: Language | None = None
    dataset: str | None = None

    @model_validator(mode="after")
    def _fill_language(self) -> BenchItem:
        if self.language is None:
            self.language = detect_language(self.prompt)
        return self


class Prediction(Record):
    """A model's answer to a bench item. ``sample`` tells apart repeated generations."""

    id: str
    prompt: str
    response: str
    length: int = Field(ge=1, description="required length")
    word_count: int = 0
    type: str | None = None
    language: Language | None = None
    model: str | None = None
    sample: int = 0
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    elapsed_s: float = 0.0

    @model_validator(mode="after")
    def _fill_counts(self) -> Prediction:
        if self.response and not self.word_count:
            self.word_count = count_words(self.response)
        return self


class Judgment(Record):
    """A judge's scores (1–5) for the six dimensions; ``status='failed'`` after exhausted retries."""

    id: str = ""
    scores: dict[str, int] = Field(default_factory=dict)
    analysis: str | None = None
    judge: str | None = None
    sample: int = 0
    replicate: int = 0
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None
    attempts: int = 1
    usage: Usage = Field(default_factory=Usage)


class ScoreGroup(Record):
    """Scores over one slice of the benchmark (all items, a length range, a type)."""

    name: str
    n: int
    n_judged: int = 0
    length_score: float | None = None
    quality_score: float | None = None
    score: float | None = None
    dimensions: dict[str, float] = Field(default_factory=dict)


class BenchReport(Record):
    """LongBench-Write results of one model: S_l, S_q, S overall and per slice."""

    model: str | None = None
    judge: str | None = None
    dataset: str | None = None
    overall: ScoreGroup
    by_length: list[ScoreGroup] = Field(default_factory=list)
    by_type: list[ScoreGroup] = Field(default_factory=list)
    judge_failures: int = 0
    dimension_std: dict[str, float] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
