"""The `lw-agentwrite` command line: plan, write or run AgentWrite over a JSONL of instructions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from lw_core import Instruction, OpenAIChatClient, Plan, read_jsonl, run_sync
from lw_core.cli import (
    CLIENT_KEY_ENV,
    ApiKeyEnv,
    ApiKeyFile,
    Assignments,
    BaseUrl,
    JsonSchema,
    Model,
    assignment,
    chat_client,
    config_keys_help,
    new_app,
    progress_bar,
    user_errors,
)
from lw_core.config import (
    UNSET,
    Assignment,
    apply_assignments,
    parse_assignments,
    read_config,
    validate_config,
)
from rich.console import Console

from lw_agentwrite.agent import AgentWrite, AgentWriteOptions, preset_sampling
from lw_agentwrite.batch import BatchStats, Mode, read_plans, run_batch
from lw_agentwrite.errors import AgentWriteError
from lw_agentwrite.prompts import Prompts

app = new_app(
    "lw-agentwrite", "AgentWrite: plan long outputs as sections with word budgets, then write them section by section."
)
err = Console(stderr=True)

InPath = Annotated[Path, typer.Option("--in", help="Instructions JSONL (lw_core.Instruction: prompt, length, ...).")]
OutPath = Annotated[
    Path, typer.Option("--out", "-o", help="Output JSONL, appended to; finished ids are skipped on resume.")
]
Preset = Annotated[
    str,
    typer.Option(
        help="Settings: 'lw' (ours), 'small' (ours for a small teacher that does not stop, with its server sampling) "
        "or 'paper' (THUDM/LongWriter's prompts and sampling, exactly); flags override."
    ),
]
Concurrency = Annotated[int, typer.Option(min=1, help="Instructions (and requests) in flight at once.")]
Cache = Annotated[Path | None, typer.Option(help="Step cache JSONL [default: <out stem>.steps.jsonl].")]
PlanPrompt = Annotated[
    Path | None, typer.Option(help="Plan prompt template file ($instruction, $length_hint; paper: $INST$).")
]
WritePrompt = Annotated[
    Path | None, typer.Option(help="Write prompt template file ($instruction, $plan, ...; paper: $INST$, $PLAN$, ...).")
]
MaxSectionTokens = Annotated[
    int | None, typer.Option(min=16, help="Upper bound on max_tokens of any section call [default: the preset's].")
]
Temperature = Annotated[float | None, typer.Option(min=0.0, help="Sampling temperature [default: the preset's].")]
Sampling = Annotated[
    list[Assignment] | None,
    typer.Option(
        metavar="KEY=VALUE",
        parser=assignment,
        help="Server-specific sampling sent with every request, repeatable, the value in TOML as --set's "
        "(e.g. llama.cpp's --sampling repeat_penalty=1.15).",
    ),
]
RetryFailed = Annotated[
    bool, typer.Option(help="Retry instructions that failed in an earlier run (their finished steps are reused).")
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
FallbackPlan = Annotated[
    bool | None,
    typer.Option(
        "--fallback-plan/--no-fallback-plan",
        help="When the planner gives no usable plan, write from generic sections of the requested length instead "
        "of failing [default: the preset's: on for lw and small, off for paper].",
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="AgentWrite options file (.toml, .yaml or .json) over the preset's; keys below."
    ),
]
Shard = Annotated[
    str | None,
    typer.Option(help="Run only shard I of N ('I/N', 0-based) of the input (one per driver machine)."),
]


def _help(summary: str) -> str:
    """A command's help: ``summary``, then every AgentWrite option with its default and description."""
    keys = config_keys_help(AgentWriteOptions)
    return (
        f"{summary}\n\nAgentWrite options (in --config FILE or --set KEY=VALUE, over the preset's; flags such as "
        f"--temperature win; the defaults shown are the lw preset's):\n\n{keys}"
    )


@app.command(help=_help("Plan every instruction: one lw_core.Plan per line (edit them, then `write`)."))
@user_errors
def plan(
    in_path: InPath,
    out: OutPath,
    base_url: BaseUrl,
    model: Model,
    api_key_env: ApiKeyEnv = CLIENT_KEY_ENV,
    api_key_file: ApiKeyFile = None,
    preset: Preset = "lw",
    concurrency: Concurrency = 8,
    cache: Cache = None,
    json_schema: JsonSchema = False,
    plan_prompt: PlanPrompt = None,
    temperature: Temperature = None,
    sampling: Sampling = None,
    fallback: FallbackPlan = None,
    config: ConfigFile = None,
    set_: Assignments = None,
    quiet: Quiet = False,
    shard: Shard = None,
) -> None:
    instructions = _instructions(in_path, shard)
    client = chat_client(base_url, model, api_key_env=api_key_env, api_key_file=api_key_file, json_schema=json_schema,
                         concurrency=concurrency, extra_body=_body(preset, sampling))  # fmt: skip
    agent = _agent(preset, client, config, set_, plan_prompt=plan_prompt, temperature=temperature, fallback=fallback)
    _run("plan", agent, instructions, out, cache=cache, concurrency=concurrency, quiet=quiet)


@app.command(help=_help("Write every instruction from its given plan: one lw_core.Document per line."))
@user_errors
def write(
    in_path: InPath,
    out: OutPath,
    plans: Annotated[Path, typer.Option(help="Plans JSONL from `lw-agentwrite plan`.")],
    base_url: BaseUrl,
    model: Model,
    api_key_env: ApiKeyEnv = CLIENT_KEY_ENV,
    api_key_file: ApiKeyFile = None,
    preset: Preset = "lw",
    concurrency: Concurrency = 8,
    cache: Cache = None,
    write_prompt: WritePrompt = None,
    max_section_tokens: MaxSectionTokens = None,
    temperature: Temperature = None,
    sampling: Sampling = None,
    retry_failed: RetryFailed = True,
    config: ConfigFile = None,
    set_: Assignments = None,
    quiet: Quiet = False,
    shard: Shard = None,
) -> None:
    instructions = _instructions(in_path, shard)
    given = read_plans(_existing(plans))
    client = chat_client(base_url, model, api_key_env=api_key_env, api_key_file=api_key_file,
                         concurrency=concurrency, extra_body=_body(preset, sampling))  # fmt: skip
    agent = _agent(preset, client, config, set_, write_prompt=write_prompt, temperature=temperature,
                   max_section_tokens=max_section_tokens)  # fmt: skip
    _run("write", agent, instructions, out, plans=given, cache=cache, concurrency=concurrency,
         retry_failed=retry_failed, quiet=quiet)  # fmt: skip


@app.command(
    help=_help(
        "Plan and write every instruction: one lw_core.Document per line. Killed runs resume where they stopped."
    )
)
@user_errors
def run(
    in_path: InPath,
    out: OutPath,
    base_url: BaseUrl,
    model: Model,
    api_key_env: ApiKeyEnv = CLIENT_KEY_ENV,
    api_key_file: ApiKeyFile = None,
    preset: Preset = "lw",
    concurrency: Concurrency = 8,
    cache: Cache = None,
    json_schema: JsonSchema = False,
    plan_prompt: PlanPrompt = None,
    write_prompt: WritePrompt = None,
    max_section_tokens: MaxSectionTokens = None,
    temperature: Temperature = None,
    sampling: Sampling = None,
    retry_failed: RetryFailed = True,
    fallback: FallbackPlan = None,
    config: ConfigFile = None,
    set_: Assignments = None,
    quiet: Quiet = False,
    shard: Shard = None,
) -> None:
    instructions = _instructions(in_path, shard)
    client = chat_client(base_url, model, api_key_env=api_key_env, api_key_file=api_key_file, json_schema=json_schema,
                         concurrency=concurrency, extra_body=_body(preset, sampling))  # fmt: skip
    agent = _agent(preset, client, config, set_, plan_prompt=plan_prompt, write_prompt=write_prompt,
                   temperature=temperature, max_section_tokens=max_section_tokens, fallback=fallback)  # fmt: skip
    _run("run", agent, instructions, out, cache=cache, concurrency=concurrency, retry_failed=retry_failed, quiet=quiet)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise AgentWriteError(f"{path}: no such file")
    return path


def _instructions(path: Path, shard: str | None) -> list[Instruction]:
    """The instructions of ``path``, or of its shard ``I/N`` (every N-th, from the I-th)."""
    instructions = list(read_jsonl(_existing(path), Instruction))
    if shard is None:
        return instructions
    index, _, count = shard.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise AgentWriteError(f"--shard {shard!r}: expected I/N with 0 <= I < N, e.g. --shard 0/4")
    return instructions[int(index) :: int(count)]


def _body(preset: str, sampling: list[Assignment] | None) -> dict[str, Any]:
    """The preset's server sampling, then the ``--sampling KEY=VALUE`` pairs (lw's one value grammar)."""
    body: dict[str, Any] = dict(preset_sampling(preset))
    for key, value in sampling or ():
        if value is UNSET:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def _agent(
    preset: str,
    client: OpenAIChatClient,
    config: Path | None,
    assignments: list[Assignment] | None,
    *,
    plan_prompt: Path | None = None,
    write_prompt: Path | None = None,
    temperature: float | None = None,
    max_section_tokens: int | None = None,
    fallback: bool | None = None,
) -> AgentWrite:
    """The preset's agent with, over it, the ``--config`` file, then ``--set``, then the dedicated flags."""
    values = read_config(config, error=AgentWriteError) if config is not None else {}
    pairs = parse_assignments(assignments or ())
    options = validate_config(AgentWriteOptions, apply_assignments(values, pairs), source=config, assigned=pairs,
                              error=AgentWriteError)  # fmt: skip
    overrides: dict[str, Any] = options.model_dump(exclude_unset=True)
    if plan_prompt is not None or write_prompt is not None:
        if preset == "paper":
            overrides["prompts"] = Prompts.paper(plan=plan_prompt, write=write_prompt)
        else:
            overrides["prompts"] = Prompts.default("en").replace(plan=plan_prompt, write=write_prompt)
    if temperature is not None:
        overrides["temperature"] = temperature
    if max_section_tokens is not None:
        overrides["max_section_tokens"] = max_section_tokens
    if fallback is not None:
        overrides["fallback_plan"] = fallback
    return AgentWrite.preset(preset, client, **overrides)


def _run(
    mode: Mode,
    agent: AgentWrite,
    instructions: list[Instruction],
    out: Path,
    *,
    plans: dict[str, Plan] | None = None,
    cache: Path | None,
    concurrency: int,
    retry_failed: bool = True,
    quiet: bool,
) -> None:
    """Run the batch with a progress bar (words, tokens/s, steps reused, prefix cache), then print its summary."""
    with progress_bar(err, detail=True, disable=quiet) as bar:
        task = bar.add_task(mode, total=None, detail="")

        def update(stats: BatchStats) -> None:
            cached = f"{stats.cached_fraction:.0%}" if stats.cached_fraction is not None else "n/a"
            detail = (
                f"{stats.words} words, {stats.tokens_per_s:.1f} tok/s, {stats.steps_reused} steps reused, "
                f"prefix cache {cached}, {stats.failed} failed, {stats.fallback_plans} fallback plans"
            )
            bar.update(task, total=stats.total, completed=stats.skipped + stats.finished, detail=detail)

        stats = run_sync(
            run_batch(agent, instructions, out, mode=mode, plans=plans, cache=cache,
                      concurrency=concurrency, retry_failed=retry_failed, progress=update)
        )  # fmt: skip
    err.print(stats.summary(), markup=False, highlight=False, soft_wrap=True)
