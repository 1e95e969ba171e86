"""`lw reproduce --dry-run`: what a configuration will do and cost, checked without a GPU or a network.

Teacher and judge tokens are counted on the real prompts (the instructions the run would write, the prompt templates
of its AgentWrite preset and judge), with tiktoken's encoding for OpenAI models when it is available (it downloads
its vocabulary once; offline, counts fall back to a stated tokens-per-word rate). Outputs are estimated from the
required lengths. Cost uses list prices per million tokens (:data:`PRICES`, dated); GPU hours use a stated training
and generation throughput per GPU, which you should replace with your own measurement. On a CPU with llama.cpp,
:func:`cpu_minutes` gives each stage's minutes from the rates the ``cpu`` profile measured on 2 cores.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from lw_core import DataFileError, count_words, data_file

from lw_reproduce.config import Endpoint, ReproduceConfig
from lw_reproduce.pipeline import STAGES, load_instructions, stage_enabled
from lw_reproduce.resolve import describe

#: USD per million (input, output) tokens, OpenAI list prices as published in 2024–2025.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-2024-05-13": (5.00, 15.00),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-2024-08-06": (2.50, 10.00),
    "gpt-4o-2024-11-20": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
}
#: Tokens per English word (per Chinese character) when no tokenizer is at hand: o200k_base on English prose.
TOKENS_PER_WORD = 1.33
#: Average section of an AgentWrite plan in words (the paper's plans ask for 200–1000 per paragraph).
SECTION_WORDS = 450
#: Planning a section costs about this many output tokens (one plan line).
PLAN_LINE_TOKENS = 45
#: A judge's reply: a short analysis and six scores.
JUDGE_REPLY_TOKENS = 350

#: Rates of the ``cpu`` profile on a 2-core CPU, embedded 135M model on llama.cpp with 4 slots (docs/results.md):
#: student tokens a second, judging included (bench_base: 52,420 tokens in 26.1 min; bench_sft: 81,203 in 39.5).
CPU_STUDENT_TOKENS_PER_S = 34.0
#: Output tokens ÷ (required words × TOKENS_PER_WORD): the base model stops early (1.16), a trained one runs long (1.8).
BASE_OUTPUT, TRAINED_OUTPUT = 1.16, 1.8
#: AgentWrite's teacher (``small`` preset): 82,000 words in ~66 min.
CPU_TEACHER_WORDS_PER_MIN = 1240.0
#: AgentWrite at inference on 40 LongBench-Write items (27,850 required words): 28 min, judging not included.
CPU_AGENTWRITE_MIN_PER_WORD = 28 / 27_850
#: lw-train's train_sft (4,096-token packed rows): 132 trained tokens a second.
CPU_SFT_TOKENS_PER_S = 132.0
#: TRL's DPOTrainer: ~20 s a step for 2 pairs of ~320 tokens, policy and reference (FACTS.md).
CPU_DPO_TOKENS_PER_S = 64.0
#: GRPO's rollouts by ``model.generate``, one thread: 14.2 completion tokens a second for a group of 4 at up to 768
#: tokens (docs/benchmarks.md); a step waits for its longest completion, so the cap bounds it (training included).
CPU_GRPO_ROLLOUT_TOKENS_PER_S = 14.2


@dataclass
class Line:
    """One row of the plan: a stage's calls, tokens, cost and GPU time."""

    stage: str
    who: str
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    gpu_hours: float | None = None
    note: str = ""


@dataclass
class StageTime:
    """A stage's estimated minutes on the CPU the ``cpu`` profile was measured on, and whether it is switched on."""

    stage: str
    enabled: bool
    minutes: float
    basis: str


@dataclass
class DryRun:
    """The estimate and the checks of a dry run."""

    lines: list[Line] = field(default_factory=list)
    minutes: list[StageTime] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    counter: str = ""
    resolved: list[str] = field(default_factory=list)

    def table(self) -> str:
        rows = [
            "| stage | model | calls | input tokens | output tokens | cost (USD) | GPU hours | note |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for line in self.lines:
            cost = "" if line.cost_usd is None else f"{line.cost_usd:,.2f}"
            hours = "" if line.gpu_hours is None else f"{line.gpu_hours:,.1f}"
            rows.append(
                f"| {line.stage} | {line.who} | {line.calls:,} | {line.input_tokens:,} | {line.output_tokens:,} | "
                f"{cost} | {hours} | {line.note} |"
            )
        total_cost = sum(line.cost_usd or 0.0 for line in self.lines)
        total_hours = sum(line.gpu_hours or 0.0 for line in self.lines)
        rows.append(f"| **total** | | | | | {total_cost:,.2f} | {total_hours:,.1f} | |")
        return "\n".join(rows)

    def minutes_table(self) -> str:
        """The stages with their estimated minutes; switched-off ones are listed with how to switch them on."""
        rows = ["| stage | runs | minutes | basis |", "| --- | --- | ---: | --- |"]
        for time_ in self.minutes:
            runs = "yes" if time_.enabled else f"off ({_SWITCHES.get(time_.stage, 'see the profile')})"
            rows.append(f"| {time_.stage} | {runs} | {time_.minutes:,.0f} | {time_.basis} |")
        total = sum(t.minutes for t in self.minutes if t.enabled)
        rows.append(f"| **total of the stages that run** | | {total:,.0f} ({total / 60:.1f} h) | |")
        return "\n".join(rows)


def dry_run(
    config: ReproduceConfig,
    *,
    train_tokens_per_gpu_s: float = 3000.0,
    generate_tokens_per_gpu_s: float = 1500.0,
    gpus: int | None = None,
) -> DryRun:
    """Estimate every enabled stage of ``config`` and check what can be checked offline.

    ``train_tokens_per_gpu_s`` and ``generate_tokens_per_gpu_s`` are assumptions (an 8–9B model, bf16,
    FlashAttention, H100-class GPU; SGLang batch decoding): they turn tokens into GPU hours. Training runs on
    ``gpus`` GPUs (default: the train stage's ``processes``). ``resolved`` lists the launcher, packing, prompt
    formats and sampling the run will use.
    """
    result = DryRun(resolved=describe(config))
    gpus = gpus or config.train.processes
    counter, result.counter = _counter(config.teacher)
    instructions = load_instructions(config)
    lengths = [i.length or 0 for i in instructions]
    result.checks += _checks(config)

    teacher_in = teacher_out = calls = 0
    plan_template, write_template = _agentwrite_templates(config)
    for instruction in instructions:
        length = instruction.length or 0
        if length <= config.agentwrite.direct_max_words:
            sections = 1
        else:
            sections = max(1, min(50, math.ceil(length / SECTION_WORDS)))
            teacher_in += counter(plan_template) + counter(instruction.prompt)
            teacher_out += sections * PLAN_LINE_TOKENS
            calls += 1
        section_tokens = math.ceil(length / sections * TOKENS_PER_WORD)
        fixed = counter(write_template) + 2 * counter(instruction.prompt) + sections * PLAN_LINE_TOKENS
        teacher_in += sections * fixed + section_tokens * sections * (sections - 1) // 2
        teacher_out += sections * section_tokens
        calls += sections
    general = config.instructions.general
    teacher_in += general * 40
    teacher_out += general * config.agentwrite.general_max_tokens // 2
    calls += general
    result.lines.append(
        _priced("agentwrite", config.teacher, calls, teacher_in, teacher_out, generate_tokens_per_gpu_s)
    )

    items, ruler = _bench_lengths(config)
    models = sum(stage_enabled(config, s) for s in STAGES if s.startswith("bench_"))
    bench_out = sum(min(config.bench.max_tokens, math.ceil(x * TOKENS_PER_WORD)) for x in items + ruler)
    student = Line(
        "benchmarks", _who(config.student), calls=models * len(items + ruler), output_tokens=models * bench_out
    )
    student.gpu_hours = _gpu_hours(config.student, student.output_tokens, generate_tokens_per_gpu_s)
    student.note = f"{models} model(s) x {len(items)} LongBench-Write + {len(ruler)} Ruler items"
    result.lines.append(student)
    judge_template = _judge_template_tokens(counter)
    judged = [x for x in items for _ in range(models)]
    judge_in = sum(judge_template + math.ceil(x * TOKENS_PER_WORD) for x in judged)
    result.lines.append(
        _priced(
            "judge", config.judge, len(judged), judge_in, len(judged) * JUDGE_REPLY_TOKENS, generate_tokens_per_gpu_s
        )
    )

    if config.train.enabled:
        settings = config.train.settings
        epochs = float(settings.get("epochs", 4.0))
        kept = sum(lengths) * TOKENS_PER_WORD + general * config.agentwrite.general_max_tokens // 2
        tokens = int(kept * epochs)
        line = Line("train", _who(config.student), output_tokens=0, input_tokens=tokens)
        line.gpu_hours = _gpu_hours(config.student, tokens, train_tokens_per_gpu_s)
        line.note = f"{epochs:g} epochs over ~{int(kept):,} tokens"
        if line.gpu_hours is not None:
            line.note += f" on {gpus} GPU{'s' if gpus > 1 else ''}: {line.gpu_hours / gpus:,.1f} h"
        result.lines.append(line)
    rounds = sum(stage_enabled(config, s) for s in ("dpo_data", "dpo2_data"))
    if rounds:
        dpo_lengths = _dpo_lengths(config, lengths)
        n = len(dpo_lengths) * config.dpo.samples * rounds
        out = sum(math.ceil(x * TOKENS_PER_WORD) for x in dpo_lengths) * config.dpo.samples * rounds
        sampled = Line("dpo samples", _who(config.student), calls=n, output_tokens=out)
        sampled.gpu_hours = _gpu_hours(config.student, out, generate_tokens_per_gpu_s)
        sampled.note = f"{rounds} round(s)"
        result.lines.append(sampled)
        if config.dpo.judge:
            judge_dpo = sum(judge_template + math.ceil(x * TOKENS_PER_WORD) for x in dpo_lengths)
            result.lines.append(
                _priced("dpo judge", config.judge, n, judge_dpo * config.dpo.samples * rounds,
                        n * JUDGE_REPLY_TOKENS, generate_tokens_per_gpu_s)
            )  # fmt: skip
    if config.student.backend == "llamacpp":
        result.minutes = cpu_minutes(config, lengths, items + ruler)
    return result


#: How to switch on a stage that is off (for the dry run's stage table).
_SWITCHES = {
    "train": "train.enabled", "bench_sft": "train.enabled", "bench_agentwrite": "agentwrite_bench.enabled",
    "train_plan": "plan_sft.enabled", "bench_plan": "plan_sft.enabled", "dpo_data": "dpo.enabled",
    "dpo": "dpo.enabled", "bench_dpo": "dpo.enabled", "dpo2_data": "dpo.rounds = 2", "dpo2": "dpo.rounds = 2",
    "bench_dpo2": "dpo.rounds = 2",
}  # fmt: skip


def cpu_minutes(config: ReproduceConfig, lengths: list[int], bench_lengths: list[int]) -> list[StageTime]:
    """Every stage's minutes on the 2-core CPU the ``cpu`` profile was measured on (the ``CPU_*`` rates: the
    embedded 135M model on llama.cpp; other machines and models differ), whether it runs or not.

    ``lengths`` are the run's instructions' required lengths, ``bench_lengths`` the benchmark items' (Ruler's too).
    """
    required_tokens = sum(bench_lengths) * TOKENS_PER_WORD

    def bench(factor: float) -> float:
        return required_tokens * factor / CPU_STUDENT_TOKENS_PER_S / 60

    general = config.instructions.general * config.agentwrite.general_max_tokens / 2 / CPU_STUDENT_TOKENS_PER_S / 60
    epochs = float(config.train.settings.get("epochs", 4.0))
    sft_tokens = (sum(lengths) * TOKENS_PER_WORD + config.instructions.general * 200) * epochs
    dpo_lengths = _dpo_lengths(config, lengths)
    samples = sum(dpo_lengths) * TOKENS_PER_WORD * TRAINED_OUTPUT * config.dpo.samples
    settings = config.dpo.settings
    pairs = len(dpo_lengths) * float(settings.get("epochs", 4.0))
    trained = f"{len(dpo_lengths)} pairs x {float(settings.get('epochs', 4.0)):g} epochs"
    if int(settings.get("max_steps", -1)) > 0:
        pairs = (
            int(settings["max_steps"])
            * int(settings.get("pairs_per_device", 1))
            * int(settings.get("gradient_accumulation_steps", 1))
        )
        trained = f"{settings['max_steps']} steps"
    pair_tokens = 2 * (sum(dpo_lengths) / max(1, len(dpo_lengths))) * TOKENS_PER_WORD * (1 + TRAINED_OUTPUT) / 2
    judged = len(bench_lengths) * JUDGE_REPLY_TOKENS / CPU_STUDENT_TOKENS_PER_S / 60
    grpo = config.grpo.settings
    grpo_group, grpo_tokens = int(grpo.get("num_generations", 8)), int(grpo.get("max_completion_length", 1024))
    grpo_steps = int(grpo.get("max_steps", -1))  # else a prompt a step, as a group of one prompt fills a step
    grpo_steps = grpo_steps if grpo_steps > 0 else math.ceil(config.grpo.prompts * float(grpo.get("epochs", 1.0)))
    estimates = {
        "instructions": (0.0, "seeded generator or a file"),
        "agentwrite": (sum(lengths) / CPU_TEACHER_WORDS_PER_MIN + general, f"{CPU_TEACHER_WORDS_PER_MIN:g} words/min"),
        "data": (0.0, "lw-data, seconds"),
        "bench_base": (bench(BASE_OUTPUT), f"{BASE_OUTPUT}x the required tokens at {CPU_STUDENT_TOKENS_PER_S:g}/s"),
        "bench_agentwrite": (
            sum(bench_lengths) * CPU_AGENTWRITE_MIN_PER_WORD + judged,
            "28 min for 40 items, plus judging",
        ),
        "train": (sft_tokens / CPU_SFT_TOKENS_PER_S / 60, f"{epochs:g} epochs at {CPU_SFT_TOKENS_PER_S:g} tokens/s"),
        "bench_sft": (bench(TRAINED_OUTPUT), f"{TRAINED_OUTPUT}x the required tokens"),
        "train_plan": (sft_tokens / CPU_SFT_TOKENS_PER_S / 60, "as train"),
        "bench_plan": (bench(TRAINED_OUTPUT), "as bench_sft"),
        "dpo_data": (
            samples / CPU_STUDENT_TOKENS_PER_S / 60,
            f"{len(dpo_lengths)} instructions x {config.dpo.samples} samples"
            + (", judged" if config.dpo.judge else ", length only"),
        ),
        "dpo": (pairs * pair_tokens / CPU_DPO_TOKENS_PER_S / 60, f"{trained} at {CPU_DPO_TOKENS_PER_S:g} tokens/s"),
        "bench_dpo": (bench(TRAINED_OUTPUT), "as bench_sft"),
        "grpo": (
            grpo_steps * grpo_group * grpo_tokens / CPU_GRPO_ROLLOUT_TOKENS_PER_S / 60,
            f"at most: {grpo_steps} steps x {grpo_group} completions at the {grpo_tokens}-token cap, "
            f"{CPU_GRPO_ROLLOUT_TOKENS_PER_S:g} tokens/s",
        ),
        "bench_grpo": (bench(TRAINED_OUTPUT), "as bench_sft"),
        "report": (0.0, "seconds"),
    }
    for name in ("dpo2_data", "dpo2", "bench_dpo2"):
        estimates[name] = estimates[name.replace("2", "")]
    return [StageTime(s, stage_enabled(config, s), *estimates.get(s, (0.0, "not estimated"))) for s in STAGES]


def _dpo_lengths(config: ReproduceConfig, lengths: list[int]) -> list[int]:
    """Required lengths of the instructions a DPO round samples (the pipeline's choice: the first that fit)."""
    fit = [x for x in lengths if config.dpo.max_required is None or x <= config.dpo.max_required]
    return fit[: config.dpo.instructions]


def _priced(stage: str, endpoint: Endpoint, calls: int, tokens_in: int, tokens_out: int, rate: float) -> Line:
    line = Line(stage, _who(endpoint), calls, tokens_in, tokens_out)
    if endpoint.base_url:
        price = PRICES.get(endpoint.model)
        if price is not None:
            line.cost_usd = tokens_in / 1e6 * price[0] + tokens_out / 1e6 * price[1]
        else:
            line.note = f"no list price for {endpoint.model!r}"
    else:
        line.gpu_hours = _gpu_hours(endpoint, tokens_out, rate)
        line.note = "served here"
    return line


def _gpu_hours(endpoint: Endpoint, tokens: float, rate: float) -> float | None:
    """GPU hours at ``rate`` tokens/s for a model served here on a GPU engine; None for CPU and remote endpoints."""
    if endpoint.base_url or endpoint.backend != "sglang":
        return None
    return tokens / rate / 3600


def _who(endpoint: Endpoint) -> str:
    return f"{endpoint.model} ({endpoint.base_url or endpoint.backend})"


def _counter(endpoint: Endpoint) -> tuple[Callable[[str], int], str]:
    """Token counting with tiktoken's encoding for ``endpoint.model`` if it loads, else by words."""
    if importlib.util.find_spec("tiktoken") is not None:
        import tiktoken

        try:
            try:
                encoding = tiktoken.encoding_for_model(endpoint.model)
            except KeyError:
                encoding = tiktoken.get_encoding("o200k_base")
            return (lambda text: len(encoding.encode(text, disallowed_special=()))), f"tiktoken {encoding.name}"
        except Exception as exc:  # tiktoken fetches its vocabulary on first use: offline that fails
            reason = f"tiktoken's vocabulary is not available offline ({type(exc).__name__})"
    else:
        reason = "tiktoken is not installed"
    return (lambda text: math.ceil(count_words(text) * TOKENS_PER_WORD)), f"{TOKENS_PER_WORD} tokens/word ({reason})"


def _judge_template_tokens(counter: Callable[[str], int]) -> int:
    try:
        return counter(data_file("longwriter_prompts/judge.txt", download=False).read_text(encoding="utf-8"))
    except DataFileError:
        return 450  # the paper's judge.txt in o200k_base tokens


def _agentwrite_templates(config: ReproduceConfig) -> tuple[str, str]:
    from lw_agentwrite import Prompts

    prompts = Prompts.paper() if config.agentwrite.preset == "paper" else Prompts.default("en")
    return prompts.plan, prompts.write


def _bench_lengths(config: ReproduceConfig) -> tuple[list[int], list[int]]:
    from lw_bench import load_items

    bench = config.bench
    items = [i.length for i in load_items(bench.dataset, data_dir=bench.data_dir, download=False)]
    if bench.max_required:
        items = [x for x in items if x <= bench.max_required]
    items = items[: bench.items] if bench.items else items
    ruler: list[int] = []
    if bench.ruler:
        ruler = [i.length for i in load_items("longwrite_ruler", data_dir=bench.data_dir, download=False)]
        if bench.ruler_max_required:
            ruler = [x for x in ruler if x <= bench.ruler_max_required]
        if bench.ruler_items_per_length:
            ruler = [x for x in sorted(set(ruler)) for _ in range(min(ruler.count(x), bench.ruler_items_per_length))]
    return items, ruler


def _checks(config: ReproduceConfig) -> list[str]:
    """What would stop the run, found now: missing keys, data files, backends."""
    found: list[str] = []
    for role in ("teacher", "judge"):
        endpoint: Endpoint = getattr(config, role)
        if endpoint.base_url and endpoint.api_key_env and not os.environ.get(endpoint.api_key_env):
            found.append(f"{role}: the API key variable {endpoint.api_key_env} is not set (needed when the run starts)")
    for name in ("longwriter_prompts/judge.txt", "longwriter_prompts/plan.txt", "longwriter_prompts/write.txt"):
        try:
            data_file(name, download=False)
        except DataFileError:
            found.append(f"{name}: not in LW_DATA_DIR or the cache yet (downloaded, pinned, at the first run)")
    backends = {config.student.backend, *(e.backend for e in (config.teacher, config.judge) if not e.base_url)}
    if "sglang" in backends and not _installed("sglang"):
        found.append("sglang is not installed here: install lw-serve[sglang] on the GPU machine")
    if config.train.enabled and config.train.distributed == "deepspeed-zero3" and not _installed("deepspeed"):
        found.append(
            "deepspeed is not installed here: train.distributed = 'deepspeed-zero3' needs it on the GPU machine"
        )
    if config.student.backend == "sglang":
        import shutil

        if shutil.which("nvidia-smi") is None:
            found.append("no NVIDIA GPU visible here: the student stages need the GPU machine")
    return found


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
