"""The `lw-agentwrite` command line: plan, write or run AgentWrite over a JSONL of instructions."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from lw_core import Capabilities, Instruction, LWError, OpenAIChatClient, Plan, read_jsonl, run_sync
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lw_agentwrite.agent import AgentWrite, preset_sampling
from lw_agentwrite.batch import BatchStats, Mode, read_plans, run_batch
from lw_agentwrite.prompts import Prompts

app = typer.Typer(
    name="lw-agentwrite",
    no_args_is_help=True,
    help="AgentWrite: plan long outputs as sections with word budgets, then write them section by section.",
)
err = Console(stderr=True)

InPath = Annotated[Path, typer.Option("--in", help="Instructions JSONL (lw_core.Instruction: prompt, length, ...).")]
OutPath = Annotated[Path, typer.Option("--out", help="Output JSONL, appended to; finished ids are skipped on resume.")]
BaseUrl = Annotated[str, typer.Option(help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1.")]
Model = Annotated[str, typer.Option(help="Model name the server expects.")]
ApiKey = Annotated[
    str | None, typer.Option(envvar="OPENAI_API_KEY", help="API key (never logged).", show_default=False)
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
JsonPlan = Annotated[bool, typer.Option(help="Ask for the plan as JSON (only if the server enforces JSON schemas).")]
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
    list[str] | None,
    typer.Option(
        help="Server-specific sampling sent with every request, KEY=VALUE, repeatable "
        "(e.g. llama.cpp's --sampling repeat_penalty=1.15)."
    ),
]
RetryFailed = Annotated[
    bool, typer.Option(help="Retry instructions that failed in an earlier run (their finished steps are reused).")
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Shard = Annotated[
    str | None,
    typer.Option(help="Run only shard I of N ('I/N', 0-based) of the input (one per driver machine)."),
]


@dataclass(frozen=True)
class _Options:
    """What every command shares: the server, the agent's settings, and how to run."""

    base_url: str
    model: str
    api_key: str | None
    preset: str
    concurrency: int
    cache: Path | None
    json_plan: bool = False
    plan_prompt: Path | None = None
    write_prompt: Path | None = None
    max_section_tokens: int | None = None
    temperature: float | None = None
    sampling: tuple[str, ...] = ()
    retry_failed: bool = True
    quiet: bool = False
    shard: str | None = None


@app.command()
def plan(
    in_path: InPath,
    out: OutPath,
    base_url: BaseUrl,
    model: Model,
    api_key: ApiKey = None,
    preset: Preset = "lw",
    concurrency: Concurrency = 8,
    cache: Cache = None,
    json_plan: JsonPlan = False,
    plan_prompt: PlanPrompt = None,
    temperature: Temperature = None,
    sampling: Sampling = None,
    quiet: Quiet = False,
    shard: Shard = None,
) -> None:
    """Plan every instruction: one lw_core.Plan per line (edit them, then `write`)."""
    options = _Options(base_url, model, api_key, preset, concurrency, cache, json_plan=json_plan,
                       plan_prompt=plan_prompt, temperature=temperature, sampling=tuple(sampling or ()), quiet=quiet,
                       shard=shard)  # fmt: skip
    _main("plan", in_path, out, None, options)


@app.command()
def write(
    in_path: InPath,
    out: OutPath,
    plans: Annotated[Path, typer.Option(help="Plans JSONL from `lw-agentwrite plan`.")],
    base_url: BaseUrl,
    model: Model,
    api_key: ApiKey = None,
    preset: Preset = "lw",
    concurrency: Concurrency = 8,
    cache: Cache = None,
    write_prompt: WritePrompt = None,
    max_section_tokens: MaxSectionTokens = None,
    temperature: Temperature = None,
    sampling: Sampling = None,
    retry_failed: RetryFailed = True,
    quiet: Quiet = False,
    shard: Shard = None,
) -> None:
    """Write every instruction from its given plan: one lw_core.Document per line."""
    options = _Options(base_url, model, api_key, preset, concurrency, cache, write_prompt=write_prompt,
                       max_section_tokens=max_section_tokens, temperature=temperature,
                       sampling=tuple(sampling or ()), retry_failed=retry_failed, quiet=quiet, shard=shard)  # fmt: skip
    _main("write", in_path, out, plans, options)


@app.command()
def run(
    in_path: InPath,
    out: OutPath,
    base_url: BaseUrl,
    model: Model,
    api_key: ApiKey = None,
    preset: Preset = "lw",
    concurrency: Concurrency = 8,
    cache: Cache = None,
    json_plan: JsonPlan = False,
    plan_prompt: PlanPrompt = None,
    write_prompt: WritePrompt = None,
    max_section_tokens: MaxSectionTokens = None,
    temperature: Temperature = None,
    sampling: Sampling = None,
    retry_failed: RetryFailed = True,
    quiet: Quiet = False,
    shard: Shard = None,
) -> None:
    """Plan and write every instruction: one lw_core.Document per line. Killed runs resume where they stopped."""
    options = _Options(base_url, model, api_key, preset, concurrency, cache, json_plan=json_plan,
                       plan_prompt=plan_prompt, write_prompt=write_prompt, max_section_tokens=max_section_tokens,
                       temperature=temperature, sampling=tuple(sampling or ()), retry_failed=retry_failed,
                       quiet=quiet, shard=shard)  # fmt: skip
    _main("run", in_path, out, None, options)


def _main(mode: Mode, in_path: Path, out: Path, plans_path: Path | None, options: _Options) -> None:
    logging.basicConfig(
        level=logging.WARNING, handlers=[RichHandler(console=err, show_path=False)], format="%(message)s"
    )
    try:
        for path in (in_path, plans_path):
            if path is not None and not path.is_file():
                raise LWError(f"{path}: no such file")
        instructions = list(read_jsonl(in_path, Instruction))
        if options.shard is not None:
            index, count = _shard(options.shard)
            instructions = instructions[index::count]
        plans = read_plans(plans_path) if plans_path is not None else None
        agent = _agent(options)
        stats = _with_progress(agent, instructions, out, mode, plans, options)
    except LWError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    err.print(stats.summary(), markup=False, highlight=False, soft_wrap=True)


def _agent(options: _Options) -> AgentWrite:
    client = OpenAIChatClient(
        base_url=options.base_url,
        model=options.model,
        api_key=options.api_key,
        concurrency=options.concurrency,
        capabilities=Capabilities(json_schema=options.json_plan, concurrency=options.concurrency),
        extra_body={**preset_sampling(options.preset), **_sampling(options.sampling)},
    )
    overrides: dict[str, Any] = {}
    if options.plan_prompt is not None or options.write_prompt is not None:
        if options.preset == "paper":
            overrides["prompts"] = Prompts.paper(plan=options.plan_prompt, write=options.write_prompt)
        else:
            overrides["prompts"] = Prompts.default("en").replace(plan=options.plan_prompt, write=options.write_prompt)
    if options.temperature is not None:
        overrides["temperature"] = options.temperature
    if options.max_section_tokens is not None:
        overrides["max_section_tokens"] = options.max_section_tokens
    return AgentWrite.preset(options.preset, client, **overrides)


def _sampling(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a request body; values are JSON where they parse (numbers, booleans), else strings."""
    body: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise LWError(f"--sampling {pair!r}: expected KEY=VALUE, e.g. --sampling repeat_penalty=1.15")
        try:
            body[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            body[key.strip()] = value
    return body


def _with_progress(
    agent: AgentWrite,
    instructions: list[Instruction],
    out: Path,
    mode: Mode,
    plans: dict[str, Plan] | None,
    options: _Options,
) -> BatchStats:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, disable=options.quiet, transient=False) as bar:
        task = bar.add_task(mode, total=None, detail="")

        def update(stats: BatchStats) -> None:
            cached = f"{stats.cached_fraction:.0%}" if stats.cached_fraction is not None else "n/a"
            detail = (
                f"{stats.words} words, {stats.tokens_per_s:.1f} tok/s, {stats.steps_reused} steps reused, "
                f"prefix cache {cached}, {stats.failed} failed"
            )
            bar.update(task, total=stats.total, completed=stats.skipped + stats.finished, detail=detail)

        return run_sync(
            run_batch(agent, instructions, out, mode=mode, plans=plans, cache=options.cache,
                      concurrency=options.concurrency, retry_failed=options.retry_failed, progress=update)
        )  # fmt: skip


def _shard(value: str) -> tuple[int, int]:
    index, _, count = value.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise LWError(f"--shard {value!r}: expected I/N with 0 <= I < N, e.g. --shard 0/4")
    return int(index), int(count)
