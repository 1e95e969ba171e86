"""What `lw reproduce` runs: one pydantic model, from a TOML/YAML file and/or CLI flags."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

from lw_core import LWError
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ConfigError(LWError):
    """The configuration file or a flag is invalid; the message names the file and the field."""


class ReproduceConfig(BaseModel):
    """The paper's pipeline, scaled by these knobs. Defaults fit a 2-core CPU in minutes.

    The paper: AgentWrite writes ~6,000 instructions into 2k–32k-word outputs, the model is fine-tuned on them
    (packed 32k rows, per-sequence loss), and LongBench-Write measures S_l, S_q and S before and after.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field("smollm2-demo", description="run folder under runs/")
    model: str = Field("smollm2-135m-instruct", description="model that writes, is trained and judged")
    backend: str | None = Field(None, description="serving backend (default: lw-serve's CPU default)")
    instructions: Path | None = Field(None, description="instructions JSONL (default: the bundled demo set)")
    n_instructions: int = Field(4, ge=1)
    write_concurrency: int = Field(4, ge=1)
    max_section_words: int = Field(250, ge=50, description="AgentWrite section budget cap")
    min_words: int = Field(100, ge=0, description="SFT filter: drop shorter documents")
    max_repetition: float = Field(0.5, ge=0, le=1, description="SFT filter: repeated 4-gram ratio")
    train_steps: int = Field(2, ge=0, description="0 skips training")
    train_max_tokens: int = Field(2048, ge=128, description="tokens per packed row")
    learning_rate: float = Field(2e-5, gt=0)
    loss_reduction: str = Field("sequence", pattern="^(token|sequence)$")
    bench_dataset: str = Field("longbench_write_en", description="bench set name or JSONL path")
    bench_data_dir: Path | None = Field(None, description="folder with the bench files (else cache/download)")
    bench_items: int = Field(3, ge=1)
    bench_max_tokens: int = Field(512, ge=16)
    judge_max_tokens: int = Field(512, ge=16)
    seed: int = 0

    @classmethod
    def load(cls, path: Path | None, overrides: dict[str, Any]) -> ReproduceConfig:
        data: dict[str, Any] = {}
        if path is not None:
            try:
                text = path.read_text(encoding="utf-8")
                if path.suffix in (".yaml", ".yml"):
                    import yaml

                    data = yaml.safe_load(text) or {}
                else:
                    data = tomllib.loads(text)
            except (OSError, tomllib.TOMLDecodeError, ValueError) as exc:
                raise ConfigError(f"{path}: cannot read the configuration: {exc}") from exc
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{path or 'flags'}: field '{field}': {first['msg']}") from None

    def digest(self) -> str:
        """Hash of everything that changes results (the run name does not)."""
        payload = self.model_dump(mode="json", exclude={"name"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
