"""Training configs: pydantic models read from TOML, YAML or JSON, with ``key=value`` overrides.

Unknown keys are errors (a typo such as ``learning_rte`` must not train with the default silently); every error
names the file and the field. Defaults are the paper's hyperparameters; packing and loss weighting default to
ours (see the README's original | ours | why table); ``recipes/longwriter-sft.toml`` is the original throughout.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from .errors import ConfigError
from .packing import Strategy

__all__ = ["DPOConfig", "LoraSettings", "SFTConfig"]

Reduction = Literal["token", "sequence", "longwriter"]
REDUCTIONS: tuple[str, ...] = ("token", "sequence", "longwriter")
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
Attention = Literal["auto", "segments", "sdpa", "eager", "flash_attention_2"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSettings(_Strict):
    """LoRA adapters (peft) instead of full fine-tuning; the final model is saved merged."""

    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = "all-linear"


class _TrainConfig(_Strict):
    model: str = Field(description="model folder, hub id (org/name), .gguf file or 'smollm2-135m-instruct'")
    data: Path = Field(description="training records: JSONL or parquet")
    output_dir: Path = Field(description="the final model lands here; checkpoints in output_dir/checkpoints")
    learning_rate: float = Field(1e-5, gt=0)
    epochs: float = Field(4.0, gt=0)
    max_steps: int = Field(-1, description="optimizer steps; > 0 overrides epochs")
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(0.03, ge=0.0, le=1.0)
    weight_decay: float = Field(0.1, ge=0.0)
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0)
    adam_beta2: float = Field(0.95, ge=0.0, lt=1.0)
    max_grad_norm: float = Field(1.0, ge=0.0)
    gradient_accumulation_steps: int = Field(1, ge=1)
    seed: int = 42
    gradient_checkpointing: bool = False
    dtype: Dtype = Field("auto", description="compute precision (autocast); auto: bfloat16 on CUDA, else float32")
    lora: LoraSettings | None = None
    eval_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    save_steps: int = Field(500, ge=1)
    save_total_limit: int | None = Field(2, ge=2, description=">= 2: a kill during a save keeps the previous one")
    logging_steps: int = Field(1, ge=1)
    resume: bool = Field(False, description="continue from the last complete checkpoint in output_dir")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")

    _source: Path | None = PrivateAttr(None)

    @classmethod
    def from_file(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Self:
        """Read ``path`` (``.toml``, ``.yaml``/``.yml`` or ``.json``) and apply ``key=value`` overrides.

        Dotted keys reach nested settings (``lora.r=8``). Relative paths are relative to the current directory.
        """
        path = Path(path)
        values = _read(path)
        for override in overrides:
            key, sep, raw = override.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--set {override!r}: expected key=value (e.g. --set max_steps=2)")
            _assign(values, key.strip().split("."), _parse_value(raw.strip()))
        return cls.validated(values, source=path)

    @classmethod
    def validated(cls, values: dict[str, Any], *, source: Path | None = None) -> Self:
        """Validate a dict, turning pydantic's errors into one ConfigError naming the file and field."""
        try:
            config = cls.model_validate(values)
        except ValidationError as error:
            raise ConfigError(_explain(error, cls, source)) from None
        config._source = source
        return config

    def where(self, field: str) -> str:
        """``file: field 'x'`` for error messages about a value of this config."""
        return f"{self._source or 'config'}: field '{field}'"

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in and absolute paths, as saved next to the checkpoints."""
        values = self.model_dump(mode="json")
        for key in ("data", "output_dir"):
            values[key] = str(Path(values[key]).expanduser().resolve())
        return values


class SFTConfig(_TrainConfig):
    """Packed SFT on lw SFT records (``{"messages": [...]}``); see ``recipes/`` for complete files.

    >>> SFTConfig(model="smollm2-135m-instruct", data="sft.jsonl", output_dir="out").loss_reduction
    'sequence'
    """

    max_tokens: int = Field(32_768, ge=8, description="tokens per packed row; longer samples are dropped")
    packing: Strategy = "bfd"
    packs_per_device: int = Field(1, ge=1, description="bins per micro-batch (all become one packed row)")
    loss_reduction: Reduction = "sequence"
    attention: Attention = Field(
        "auto", description="auto: FlashAttention-2 varlen on CUDA if installed, else sdpa (block mask); CPU: segments"
    )
    pad_to_multiple_of: int | None = Field(64, ge=1)
    loss_chunk_size: int = Field(1024, ge=1)


class DPOConfig(_TrainConfig):
    """DPO with TRL's DPOTrainer on lw preference pairs (conversational ``prompt``/``chosen``/``rejected``)."""

    learning_rate: float = Field(1e-6, gt=0)
    max_tokens: int = Field(32_768, ge=8, description="prompt + answer tokens; longer pairs are dropped")
    beta: float = Field(0.1, gt=0)
    loss_type: str = "sigmoid"
    sft_weight: float = Field(0.0, ge=0.0, description="add TRL's 'sft' loss on the chosen answer with this weight")
    pairs_per_device: int = Field(1, ge=1)
    precompute_ref_log_probs: bool = False


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            values: Any = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml  # type: ignore[import-untyped]

            values = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            values = json.loads(text)
        else:
            raise ConfigError(f"{path}: unknown config format {path.suffix!r}; use .toml, .yaml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError) as error:
        raise ConfigError(f"{path}: cannot parse: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a table of key = value settings, got {type(values).__name__}")
    return values


def _parse_value(raw: str) -> Any:
    """JSON for lists, tables and null; anything else stays a string that pydantic converts to the field's type."""
    if raw == "null" or raw.startswith(("[", "{")):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _assign(values: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        nested = values.get(key)
        if not isinstance(nested, dict):
            nested = values[key] = {}
        values = nested
    values[keys[-1]] = value


def _explain(error: ValidationError, cls: type[BaseModel], source: Path | None) -> str:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    where = f"{source or 'config'}: field '{field}'"
    if first["type"] == "extra_forbidden":
        known = ", ".join(sorted(cls.model_fields))
        return f"{where}: unknown key (a typo?); known keys: {known}"
    if first["type"] == "missing":
        return f"{where}: required; set it in the file or with --set {field}=..."
    return f"{where}: {first['msg']} (got {first.get('input')!r})"
