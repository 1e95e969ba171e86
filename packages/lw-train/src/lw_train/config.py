"""Training configs: pydantic models read from TOML, YAML or JSON, with ``--set KEY=VALUE`` overrides.

Read by lw-core's one loader (:mod:`lw_core.config`: the same files and ``--set`` grammar as ``lw reproduce``).
Unknown keys are errors (a typo such as ``learning_rte`` must not train with the default silently); every error
names the file (or the ``--set``) and the field. Defaults are the paper's hyperparameters; packing and loss
weighting default to ours (see the README's original | ours | why table); ``recipes/longwriter-sft.toml`` is the
original throughout.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, Self

from lw_core.config import Assignment, apply_assignments, parse_assignments, read_config, validate_config
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from .errors import ConfigError
from .packing import Strategy

__all__ = ["DPOConfig", "GRPOConfig", "LoraSettings", "RewardSpec", "SFTConfig"]

Reduction = Literal["token", "sequence", "longwriter"]
REDUCTIONS: tuple[str, ...] = ("token", "sequence", "longwriter")
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
#: How chats become tokens: the tokenizer's chat template (ours), or a released LongWriter model's own format.
PromptFormat = Literal["template", "llama-inst", "glm4", "longwriter"]
#: ``grouped`` (ours): steps of similar-size bins, reshuffled every epoch; ``original``: THUDM/LongWriter's order.
Order = Literal["grouped", "original"]
Attention = Literal["auto", "segments", "sdpa", "eager", "flash_attention_2", "flex", "varlen"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSettings(_Strict):
    """LoRA adapters (peft) instead of full fine-tuning; the final model is saved merged."""

    r: int = Field(16, ge=1, description="rank of the adapter matrices")
    alpha: int = Field(32, ge=1, description="scaling numerator (the update is scaled by alpha / r)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the adapters' input")
    target_modules: list[str] | str = Field(
        "all-linear", description="module names to adapt, or 'all-linear' (peft's every linear layer but the head)"
    )


class _TrainConfig(_Strict):
    model: str = Field(description="model folder, hub id (org/name), .gguf file or 'smollm2-135m-instruct'")
    data: Path = Field(description="training records: JSONL or parquet")
    output_dir: Path = Field(description="the final model lands here; checkpoints in output_dir/checkpoints")
    learning_rate: float = Field(1e-5, gt=0, description="peak learning rate (AdamW)")
    epochs: float = Field(4.0, gt=0, description="passes over the data (max_steps > 0 overrides)")
    max_steps: int = Field(-1, description="optimizer steps; > 0 overrides epochs")
    lr_scheduler: str = Field("cosine", description="transformers' scheduler name: cosine, linear, constant, ...")
    warmup_ratio: float = Field(0.03, ge=0.0, le=1.0, description="share of the steps spent warming the rate up")
    weight_decay: float = Field(0.1, ge=0.0, description="AdamW weight decay")
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0, description="AdamW beta1")
    adam_beta2: float = Field(0.95, ge=0.0, lt=1.0, description="AdamW beta2")
    max_grad_norm: float = Field(1.0, ge=0.0, description="gradient clipping norm (0: off)")
    gradient_accumulation_steps: int = Field(1, ge=1, description="micro-steps summed into one optimizer step")
    seed: int = Field(42, description="seed of data order, initialisation and sampling")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: less memory")
    dtype: Dtype = Field("auto", description="compute precision (autocast); auto: bfloat16 on CUDA, else float32")
    lora: LoraSettings | None = Field(None, description="LoRA adapters {r, alpha, dropout, target_modules}; none: full")
    eval_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="share of the records held out for evaluation")
    save_steps: int = Field(500, ge=1, description="optimizer steps between checkpoints")
    save_total_limit: int | None = Field(2, ge=2, description=">= 2: a kill during a save keeps the previous one")
    logging_steps: int = Field(1, ge=1, description="optimizer steps between log.jsonl lines")
    resume: bool = Field(False, description="continue from the last complete checkpoint in output_dir")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")
    trust_remote_code: bool = Field(
        False, description="run the model repository's own Python code (THUDM/glm-4-9b needs it); only if you trust it"
    )

    _source: Path | None = PrivateAttr(None)

    @classmethod
    def from_file(cls, path: str | Path, overrides: Iterable[str | Assignment] = ()) -> Self:
        """Read ``path`` (``.toml``, ``.yaml``/``.yml`` or ``.json``) and apply ``KEY=VALUE`` overrides.

        Overrides follow lw's one grammar (:mod:`lw_core.config`): TOML values, a bare word is text, dotted keys
        reach nested settings (``lora.r=8``), ``KEY=`` removes a key. Relative paths are relative to the current
        directory.
        """
        path = Path(path)
        assigned = parse_assignments(overrides, error=ConfigError)
        values = apply_assignments(read_config(path, error=ConfigError), assigned)
        return cls.validated(values, source=path, assigned=assigned)

    @classmethod
    def validated(cls, values: dict[str, Any], *, source: Path | None = None, assigned: Iterable[str] = ()) -> Self:
        """Validate a dict, turning pydantic's errors into one ConfigError naming the file (or ``--set``) and field."""
        config = validate_config(cls, values, source=source, assigned=assigned, error=ConfigError)
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
    packing: Strategy = Field(
        "bfd", description="bins of samples: bfd (best fit, ours), nextfit (the original), sorted-nextfit, none"
    )
    order: Order = Field(
        "grouped",
        description="grouped: steps of similar-size bins, reshuffled every epoch; original: the bins in packing "
        "order every epoch, the last (partial) one dropped, as THUDM/LongWriter's sort_and_group.py and trainer",
    )
    packs_per_device: int = Field(1, ge=1, description="bins per micro-batch (all become one packed row)")
    loss_reduction: Reduction = Field(
        "sequence",
        description="sequence: every sample weighs the same (LongAlign's weighting, ours); token: every token does; "
        "longwriter: the released code's --pack_loss (each row's token mean scaled by its samples / 30)",
    )
    prompt_format: PromptFormat = Field(
        "template",
        description="template: the tokenizer's chat template; llama-inst / glm4: the released LongWriter models' "
        "formats (pre_tokenize_llama3.py / pre_tokenize_glm4.py); longwriter: whichever of the two the model's "
        "family uses. The final model's chat template is set to the format, so servers prompt it as it was trained",
    )
    attention: Attention = Field(
        "auto",
        description="auto: FlashAttention-2 varlen on CUDA if installed, else the fastest path measured on CUDA "
        "(sdpa with the block mask until flex/varlen are measured); CPU: segments. flex: torch's compiled flex "
        "attention with a document-causal block mask; varlen: torch's FlashAttention varlen kernels (torch >= 2.9, "
        "bf16); both CUDA only",
    )
    pad_to_multiple_of: int | None = Field(64, ge=1, description="pad packed rows to a multiple of this (GPU kernels)")
    loss_chunk_size: int = Field(1024, ge=1, description="tokens per chunk of the loss (bounds the logits' memory)")


class DPOConfig(_TrainConfig):
    """DPO with TRL's DPOTrainer on lw preference pairs (conversational ``prompt``/``chosen``/``rejected``)."""

    learning_rate: float = Field(1e-6, gt=0, description="peak learning rate (AdamW)")
    max_tokens: int = Field(32_768, ge=8, description="prompt + answer tokens; longer pairs are dropped")
    beta: float = Field(0.1, gt=0, description="DPO's beta: how far the policy may move from the reference")
    loss_type: str = Field("sigmoid", description="TRL's DPO loss: sigmoid (the DPO paper's), ipo, hinge, ...")
    sft_weight: float = Field(0.0, ge=0.0, description="add TRL's 'sft' loss on the chosen answer with this weight")
    pairs_per_device: int = Field(1, ge=1, description="preference pairs per rank per micro-step")
    precompute_ref_log_probs: bool = Field(
        False, description="score every pair with the reference model once before training (frees its memory)"
    )


#: The default rewards of a GRPO run: lw-bench's length reward and repetition penalty, weight 1 each
#: (``lw_bench.rewards.LENGTH_REWARDS``), named by import string so lw-train never imports lw-bench.
DEFAULT_REWARDS: tuple[dict[str, Any], ...] = (
    {"func": "lw_bench.rewards:length_reward", "weight": 1.0},
    {"func": "lw_bench.rewards:repetition_reward", "weight": 1.0},
)
_IMPORT_STRING = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
LossType = Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"]


class RewardSpec(_Strict):
    """One reward of a GRPO run: a function in TRL's reward signature, found by its import string, and its weight."""

    func: str = Field(
        description="'module:name' of a reward f(prompts, completions, **columns) -> list[float | None], e.g. "
        "'lw_bench.rewards:length_reward'; imported when the run starts"
    )
    weight: float = Field(1.0, description="its weight in the summed reward (TRL's reward_weights)")
    options: dict[str, Any] | None = Field(
        None,
        description="when set, func is a factory called with these keyword arguments that returns the reward (e.g. "
        "'lw_bench.rewards:JudgeReward.from_endpoint' with base_url and model)",
    )

    @field_validator("func")
    @classmethod
    def _import_string(cls, value: str) -> str:
        if not _IMPORT_STRING.fullmatch(value):
            raise ValueError("expected 'module:name', e.g. 'lw_bench.rewards:length_reward'")
        return value


class GRPOConfig(_TrainConfig):
    """GRPO with TRL's GRPOTrainer on lw ``Instruction`` prompts, rewarded by functions named by import string.

    The prompts are any lw Instruction JSONL or parquet (``prompt`` and the required ``length``, e.g. from
    ``lw-data instructions``); every column reaches the rewards. GRPO's keys keep TRL's names and defaults.

    >>> config = GRPOConfig(model="smollm2-135m-instruct", data="prompts.jsonl", output_dir="out")
    >>> [reward.func for reward in config.rewards], config.num_generations
    (['lw_bench.rewards:length_reward', 'lw_bench.rewards:repetition_reward'], 8)
    """

    data: Path = Field(
        description="prompts: lw Instruction records (JSONL or parquet) with 'prompt' and the required 'length'"
    )
    learning_rate: float = Field(1e-6, gt=0, description="peak learning rate (AdamW; TRL's GRPO default)")
    epochs: float = Field(1.0, gt=0, description="passes over the prompts (max_steps > 0 overrides)")
    rewards: list[RewardSpec] = Field(
        default_factory=lambda: [RewardSpec.model_validate(r) for r in DEFAULT_REWARDS],
        min_length=1,
        description="the rewards and their weights: a list of {func, weight, options} tables",
    )
    system_prompt: str | None = Field(None, description="a system message before every prompt (none: no system turn)")
    num_generations: int = Field(8, ge=2, description="completions per prompt: the group whose rewards are compared")
    completions_per_device: int | None = Field(
        None,
        ge=1,
        description="completions per rank per micro-step (TRL's per_device_train_batch_size; default "
        "num_generations); this x ranks x gradient_accumulation_steps must be a multiple of num_generations",
    )
    max_completion_length: int = Field(
        1024, ge=1, description="tokens per completion; a longer one is cut there and counts as truncated"
    )
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the rollouts")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling of the rollouts (1: off)")
    top_k: int = Field(0, ge=0, description="top-k sampling of the rollouts (0: off)")
    repetition_penalty: float = Field(1.0, gt=0, description="transformers' repetition penalty in rollouts (1: off)")
    beta: float = Field(0.0, ge=0, description="KL weight against the starting model (0: no reference model kept)")
    loss_type: LossType = Field(
        "dapo", description="TRL's loss aggregation: dapo (token-level, global), dr_grpo, grpo, bnpo, cispo, sapo"
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="divide advantages by the reward std of the group, the batch, or not at all (Dr. GRPO)"
    )
    multi_objective_aggregation: Literal["sum_then_normalize", "normalize_then_sum"] = Field(
        "sum_then_normalize", description="weight and sum the rewards, then normalise; or normalise each, then sum"
    )
    epsilon: float = Field(0.2, gt=0, description="clipping range of the policy ratio")
    epsilon_high: float | None = Field(None, gt=0, description="upper clipping range (DAPO: 0.28); default epsilon")
    num_iterations: int = Field(1, ge=1, description="optimizer passes over each batch of rollouts (GRPO's mu)")
    mask_truncated_completions: bool = Field(
        False, description="leave completions cut at max_completion_length out of the loss (DAPO)"
    )
    save_completions: bool = Field(
        True, description="append every rollout (step, id, required length, words, text) to completions.jsonl"
    )
