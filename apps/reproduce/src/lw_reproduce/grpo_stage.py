"""The GRPO stage of `lw reproduce` (issue 24): RL on the loop-aware length score instead of (or after) SFT.

**grpo** generates its own prompts with lw-data's seeded instruction generator (lengths the rollouts can reach),
drops any that is a benchmark item (by id or by text; normally none), and trains the base or the SFT model with
``lw_train.train_grpo`` on them, rewarded by ``grpo.settings.rewards`` (default: lw-bench's length and repetition
rewards). The run resumes from its last checkpoint. **bench_grpo** then benchmarks the trained model exactly like
the other rows (same items, backend, sampling, token caps and judge), and the report gains a ``grpo`` row.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from lw_core import BenchItem, Instruction, write_jsonl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lw_reproduce.errors import PipelineError


class GRPOSection(BaseModel):
    """GRPO with lw-train on generated prompts, benchmarked as its own row; ``settings`` are ``lw_train.GRPOConfig``
    fields (``model``, ``data`` and ``output_dir`` are the run's)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    start: Literal["base", "sft"] = Field(
        "base", description="train the base model (LongWriter-Zero starts from a base model) or the SFT model"
    )
    prompts: int = Field(256, ge=1, description="prompts from lw-data's generator (not LongBench-Write's)")
    min_words: int = Field(100, ge=20, description="shortest requested length of a prompt")
    max_words: int = Field(600, ge=20, description="longest requested length: what max_completion_length can reach")
    seed: int = Field(24, description="the generator's seed (another than the instructions stage's)")
    settings: dict[str, Any] = Field(default_factory=dict, description="GRPOConfig fields")

    @model_validator(mode="after")
    def _lengths(self) -> GRPOSection:
        if self.max_words < self.min_words:
            raise ValueError(f"max_words ({self.max_words}) is below min_words ({self.min_words})")
        return self


def prompts(section: GRPOSection, held_out: list[BenchItem]) -> tuple[list[Instruction], int]:
    """The stage's prompts, and how many generated ones were dropped for being a benchmark item (by id or text)."""
    from lw_data import generate_instructions

    rows = generate_instructions(
        section.prompts, seed=section.seed, min_words=section.min_words, max_words=section.max_words
    ).to_dicts()
    generated = [Instruction.model_validate(row) for row in rows]
    ids, texts = {i.id for i in held_out}, {_normal(i.prompt) for i in held_out}
    kept = [p for p in generated if p.id not in ids and _normal(p.prompt) not in texts]
    return kept, len(generated) - len(kept)


def train(section: GRPOSection, *, model: str, folder: Path, held_out: list[BenchItem]) -> dict[str, Any]:
    """Write the prompts into ``folder``, then GRPO of ``model`` into ``folder/model`` (resuming a killed run)."""
    from lw_train import GRPOConfig, train_grpo

    chosen, dropped = prompts(section, held_out)
    if not chosen:
        raise PipelineError("grpo: every generated prompt is a benchmark item; change grpo.seed or grpo.prompts")
    data = folder / "prompts.jsonl"
    write_jsonl(data, chosen)
    output_dir = folder / "model"
    settings = {**section.settings, "model": model, "data": str(data), "output_dir": str(output_dir), "resume": True}
    result = train_grpo(GRPOConfig.validated(settings))
    lengths = sorted(p.length or 0 for p in chosen)
    return {
        "model": str(result.output_dir),
        "from": section.start,
        "prompts": len(chosen),
        "dropped_benchmark_items": dropped,
        "requested_words": {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]},
        **{k: v for k, v in result.summary.items() if k != "steps_log"},
    }


def _normal(text: str) -> str:
    """A prompt compared by its words alone: case, punctuation and spacing do not tell two prompts apart."""
    return " ".join(re.findall(r"\w+", text.lower()))
