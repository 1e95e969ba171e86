"""What `lw reproduce` runs: a profile (smoke, cpu, paper), then a user's TOML/YAML file, then ``--set`` flags.

Read by lw-core's one loader (:mod:`lw_core.config`: the same files and ``--set`` grammar as ``lw-train``). Every
section is a strict pydantic model: an unknown key is an error naming the file and the field, so a typo never runs
with a default silently. The run folder is keyed by :meth:`ReproduceConfig.digest` (everything that changes
results), so a changed configuration never resumes from another configuration's outputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from lw_agentwrite import AgentWriteOptions
from lw_core.config import apply_assignments, merge, read_config, validate_config
from lw_data import SFTFilters
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lw_reproduce.errors import ConfigError
from lw_reproduce.grpo_stage import GRPOSection

PROFILES = ("smoke", "cpu", "paper")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _agentwrite_options(options: dict[str, Any]) -> dict[str, Any]:
    """AgentWrite fields checked when the configuration is read, not when a stage builds the agent hours later."""
    try:
        AgentWriteOptions.model_validate(options)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ValueError(f"{'.'.join(map(str, error['loc']))}: {error['msg']}") from None
    return options


AgentWriteFields = Annotated[dict[str, Any], AfterValidator(_agentwrite_options)]


class Endpoint(_Section):
    """A model behind an OpenAI-compatible endpoint: served here by lw-serve, or remote (``base_url``).

    The API key of a remote endpoint is read from the environment variable named by ``api_key_env`` when the run
    starts; the key itself never appears in a config, a manifest or a log.
    """

    model: str = Field("smollm2-135m-instruct", description="lw-serve registry name, GGUF file, HF folder or hub id")
    backend: str | None = Field("llamacpp", description="lw-serve backend when served here (llamacpp, sglang, ...)")
    base_url: str | None = Field(None, description="a remote OpenAI-compatible endpoint instead of a local server")
    api_key_env: str | None = Field(None, description="environment variable holding the remote endpoint's key")
    concurrency: int = Field(4, ge=1, description="requests in flight")
    context_length: int | None = Field(None, ge=256, description="the model's context (local servers)")
    threads: int | None = Field(None, ge=1, description="llama.cpp threads (1 holds up better on a busy machine)")


class InstructionsSection(_Section):
    """Long-writing instructions (our seeded generator, or a user's JSONL) and short general ones."""

    file: Path | None = Field(None, description="instructions JSONL; default: lw-data's seeded generator")
    n: int = Field(4, ge=1, description="long-writing instructions to generate")
    min_words: int = Field(100, ge=20)
    max_words: int = Field(3000, ge=20)
    languages: list[Literal["en", "zh"]] = Field(["en"])  # pydantic copies the default per instance
    general: int = Field(0, ge=0, description="short general instructions, answered directly and mixed in")
    seed: int = 0

    @model_validator(mode="after")
    def _lengths(self) -> InstructionsSection:
        if self.max_words < self.min_words:
            raise ValueError(f"max_words ({self.max_words}) is below min_words ({self.min_words})")
        return self


class AgentWriteSection(_Section):
    """How the teacher writes: an AgentWrite preset, server sampling, and direct answers for short requests."""

    preset: Literal["paper", "lw", "small"] = "lw"
    options: AgentWriteFields = Field(default_factory=dict, description="AgentWrite fields, e.g. max_section_words")
    sampling: dict[str, Any] | None = Field(
        None, description="server sampling, e.g. {repeat_penalty = 1.15}; default: what the preset was measured with"
    )
    direct_max_words: int = Field(0, ge=0, description="requests of at most this many words get one direct section")
    general_max_tokens: int = Field(512, ge=16, description="token cap of a direct answer to a general instruction")


class DataSection(SFTFilters):
    """lw-data's SFT filters (:class:`lw_data.SFTFilters`: its fields, defaults and checks), and the mix with
    general chats. ``max_repetition`` is also what counts as a degenerate benchmark output in the report.

    ``plan_augmented`` is not set here: the plan-augmented SFT is a stage of its own (``plan_sft.enabled``).
    """

    model_config = ConfigDict(extra="forbid")

    long_fraction: float = Field(1.0, gt=0, le=1, description="share of long-writing records in the training mix")
    seed: int = Field(0, description="seed of the mix")

    @field_validator("plan_augmented")
    @classmethod
    def _plan_augmented_is_its_own_stage(cls, value: bool) -> bool:
        if value:
            raise ValueError("the plan-augmented SFT is a stage of its own: set plan_sft.enabled = true instead")
        return value

    def filters(self, *, plan_augmented: bool = False) -> SFTFilters:
        """The lw-data filters of this section (for the SFT data, or with ``plan_augmented`` for plan_sft's)."""
        values = self.model_dump(include=set(SFTFilters.model_fields))
        return SFTFilters.model_validate({**values, "plan_augmented": plan_augmented})


#: SFTFilters fields the data section gained when it became SFTFilters (it had a mirror of some before): hashed only
#: when set away from lw-data's default, so run folders made before keep their configuration hash and resume.
_DATA_FIELDS_ADDED = ("max_words", "min_length_ratio", "max_length_ratio", "ngram", "plan_augmented", "system_prompt")


class TrainSection(_Section):
    """Supervised fine-tuning with lw-train; ``settings`` are :class:`lw_train.SFTConfig` fields.

    One process with ``distributed = "ddp"`` trains in this process; anything else is ``accelerate launch`` of
    ``processes`` processes (one per GPU) with ``distributed``'s settings (``lw_train.launch``).
    """

    enabled: bool = True
    settings: dict[str, Any] = Field(default_factory=dict, description="SFTConfig fields (model, data, output_dir set)")
    processes: int = Field(1, ge=1, description="training processes, one per GPU; more than 1: accelerate launch")
    distributed: Literal["ddp", "deepspeed-zero3", "fsdp2"] = Field(
        "ddp",
        description="ddp: data parallel; deepspeed-zero3: THUDM/LongWriter's stage3.json (CPU offload, needs "
        "deepspeed); fsdp2: PyTorch FSDP2. Anything but ddp on one process also goes through accelerate launch",
    )
    export_outtype: Literal["f32", "f16", "bf16", "q8_0"] = Field("f16", description="GGUF export of base and SFT")


class BenchSection(_Section):
    """LongBench-Write (and LongWrite-Ruler) for the base and the trained model, with the same sampling."""

    dataset: str = Field("longbench_write_en", description="bench set name or JSONL path")
    data_dir: Path | None = Field(None, description="folder of the bench files (default: LW_DATA_DIR, else download)")
    max_required: int | None = Field(None, ge=1, description="only items requiring at most this length")
    items: int | None = Field(None, ge=1, description="at most this many items (after max_required)")
    max_tokens: int = Field(32768, ge=16, description="new-token cap per answer")
    tokens_per_required_word: float | None = Field(
        None, gt=0, description="cap each answer at this many tokens per required word (beyond 4x, S_l is 0 anyway)"
    )
    temperature: float = 0.5
    top_p: float | None = 0.8
    sampling: dict[str, Any] = Field(default_factory=dict, description="server sampling, same for every model")
    model_sampling: Literal["fixed", "paper"] = Field(
        "fixed",
        description="fixed: temperature, top_p and sampling above; paper: temperature, top_p and top_k of the "
        "student's family as the released pred.py samples it (lw_bench.PAPER_SAMPLING), sampling added on top",
    )
    judge: Literal["paper", "lw"] = "paper"
    judge_max_tokens: int | None = Field(None, ge=16, description="judge reply cap (default: the judge preset's)")
    judge_retries: int = Field(4, ge=0, description="re-asks of an unreadable judge reply (the paper: 4, 5 tries)")
    ruler: bool = False
    ruler_max_required: int | None = Field(None, ge=1)
    ruler_items_per_length: int | None = Field(None, ge=1)


class DPOSection(_Section):
    """The paper's DPO stage: answers sampled from the SFT model on the benchmark's backend and sampling, scored
    (length and judge), paired (the best vs a random other), DPO with lw-train, benchmarked as its own row.

    The defaults are the paper's; ``length_measure = "loop_free"``, ``judge = false``, ``rejected = "worst"``,
    ``start = "base"`` and ``rounds = 2`` are ours, the levers of issue 27.
    """

    enabled: bool = False
    seed: int = 0
    samples: int = Field(4, ge=2, description="answers sampled per instruction (the paper: 4)")
    instructions: int = Field(
        64, ge=1, description="instructions sampled, the run's first (after max_required): at most a pair each"
    )
    max_required: int | None = Field(None, ge=1, description="only instructions requiring at most this length")
    tokens_per_required_word: float | None = Field(
        None, gt=0, description="token cap per required word of a sample (default: the benchmark's)"
    )
    judge: bool = Field(True, description="judge the samples and weigh S_q in (false: the length score alone)")
    length_weight: float = Field(0.5, ge=0, le=1, description="weight of S_l against the judge's S_q (the paper: 0.5)")
    length_measure: Literal["words", "loop_free"] = Field(
        "words", description="words: S_l of every word (the paper's); loop_free: of the words before a loop starts"
    )
    rejected: Literal["random", "worst"] = Field(
        "random", description="random: a seeded other sample (the paper's); worst: the lowest score"
    )
    start: Literal["sft", "base"] = Field("sft", description="DPO of the SFT model (the paper's) or of the base model")
    rounds: int = Field(1, ge=1, le=2, description="2: once more on the DPO model's own samples")
    general_pairs: Path | None = Field(None, description="general preference pairs to mix in (JSONL)")
    long_fraction: float = Field(1.0, gt=0, le=1)
    settings: dict[str, Any] = Field(default_factory=dict, description="DPOConfig fields")


class PlanSFTSection(_Section):
    """The paper's plan-augmented variant: SFT (``train.settings``) on the same documents with answers that write
    the AgentWrite plan first, benchmarked as its own row on the text after the plan."""

    enabled: bool = False


class AgentWriteBenchSection(_Section):
    """AgentWrite at inference, a reference row: the base model answers the benchmark items through AgentWrite
    (plan, then sections) on the student's backend, sampling and judge."""

    enabled: bool = False
    preset: Literal["paper", "lw", "small"] | None = Field(
        None, description="AgentWrite preset (default: agentwrite's)"
    )
    options: AgentWriteFields = Field(default_factory=dict, description="AgentWrite fields over the preset's")


class ReproduceConfig(_Section):
    """The paper's pipeline, scaled by a profile. See ``profiles/*.toml`` in this package for complete examples."""

    name: str = Field("smoke", description="run folder under --runs")
    profile: str = Field("smoke", description="the profile this config started from")
    purpose: str = Field("pipeline check", description="what the run shows; printed on the report")
    teacher: Endpoint = Field(default_factory=Endpoint, description="writes the AgentWrite data")
    student: Endpoint = Field(default_factory=Endpoint, description="the model that is benchmarked and trained")
    judge: Endpoint = Field(default_factory=Endpoint, description="LongBench-Write's quality judge")
    instructions: InstructionsSection = Field(default_factory=InstructionsSection)
    agentwrite: AgentWriteSection = Field(default_factory=AgentWriteSection)
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSection = Field(default_factory=TrainSection)
    bench: BenchSection = Field(default_factory=BenchSection)
    dpo: DPOSection = Field(default_factory=DPOSection)
    plan_sft: PlanSFTSection = Field(default_factory=PlanSFTSection)
    agentwrite_bench: AgentWriteBenchSection = Field(default_factory=AgentWriteBenchSection)
    grpo: GRPOSection = Field(default_factory=GRPOSection)

    @field_validator("student")
    @classmethod
    def _student_is_served_here(cls, student: Endpoint) -> Endpoint:
        if student.base_url:
            raise ValueError("no base_url: the student is trained and served by this run; give a model instead")
        return student

    @classmethod
    def load(
        cls, profile: str = "smoke", path: Path | None = None, overrides: Mapping[str, Any] | None = None
    ) -> ReproduceConfig:
        """The profile's values, updated by the file at ``path``, then by dotted ``overrides`` (flags win).

        ``overrides`` are ``--set`` assignments (:func:`lw_core.config.parse_assignments`); a None value is skipped.
        """
        data = _profile(profile)
        data["profile"] = profile
        data.setdefault("name", profile)
        if path is not None:
            merge(data, read_config(path, error=ConfigError))
        assigned = {key: value for key, value in (overrides or {}).items() if value is not None}
        apply_assignments(data, assigned)
        where = str(path) if path is not None else f"profile {profile!r}"
        config = validate_config(cls, data, source=where, assigned=assigned, error=ConfigError)
        config.check_train_settings(where)
        return config

    def check_train_settings(self, where: str) -> None:
        """Validate ``train.settings`` / ``dpo.settings`` / ``grpo.settings`` against lw-train's configs now, not hours
        later."""
        from lw_train import DPOConfig, GRPOConfig, SFTConfig, TrainError

        for section, config_cls in (("train", SFTConfig), ("dpo", DPOConfig), ("grpo", GRPOConfig)):
            settings = getattr(self, section).settings
            values = {"model": "m", "data": "d.jsonl", "output_dir": "o", **settings}
            try:
                config_cls.validated(values)
            except TrainError as exc:
                message = str(exc).split(": ", 1)[-1].replace("field '", f"field '{section}.settings.", 1)
                raise ConfigError(f"{where}: {message}") from None

    def digest(self) -> str:
        """Hash of everything that changes results: not the run's name and purpose, nor where an endpoint listens,
        its key's variable, its concurrency or threads (a server moved to another port resumes the same run)."""
        where = {"base_url", "api_key_env", "concurrency", "threads"}
        added = {f for f in _DATA_FIELDS_ADDED if getattr(self.data, f) == SFTFilters.model_fields[f].default}
        exclude: dict[str, bool | set[str]] = {
            "name": True,
            "purpose": True,
            "teacher": where,
            "student": where,
            "judge": where,
            "data": added,
        }
        payload = self.model_dump(mode="json", exclude=exclude)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def profile_path(name: str) -> Path:
    """The packaged TOML of a profile (copy it to start your own config)."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}")
    return Path(str(resources.files("lw_reproduce") / "profiles" / f"{name}.toml"))


def _profile(name: str) -> dict[str, Any]:
    return read_config(profile_path(name), error=ConfigError)
