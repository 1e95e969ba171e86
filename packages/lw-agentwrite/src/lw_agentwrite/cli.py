"""The `lw-agentwrite` command line: plan, write or run AgentWrite over a JSONL of instructions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from lw_core import Capabilities, Instruction, LWError, OpenAIChatClient, read_jsonl, run_sync
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lw_agentwrite.agent import AgentWrite
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
Concurrency = Annotated[int, typer.Option(min=1, help="Instructions (and requests) in flight at once.")]
Cache = Annotated[Path | None, typer.Option(help="Step cache JSONL [default: <out stem>.steps.jsonl].")]
JsonPlan = Annotated[bool, typer.Option(help="Ask for the plan as JSON (only if the server enforces JSON schemas).")]
PlanPrompt = Annotated[Path | None, typer.Option(help="Plan prompt template file ($instruction, $length_hint).")]
WritePrompt = Annotated[Path | None, typer.Option(help="Write prompt template file ($instruction, $plan, ...).")]
MaxSectionTokens = Annotated[int, typer.Option(min=16, help="Upper bound on max_tokens of any section call.")]
Temperature = Annotated[float, typer.Option(min=0.0, help="Sampling temperature.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Shard = Annotated[
    str | None,
    typer.Option(help="Run only shard I of N ('I/N', 0-based) of the input (one per driver machine)."),
]


@app.command()
def plan(
    in_path: InPath,
    out: OutPath,
    base_url: BaseUrl,
    model: Model,
    api_key: ApiKey = None,
    concurrency: Concurrency = 8,
    cache: Cache = None,
    json_plan: JsonPlan = False,
    plan_prompt: PlanPrompt = None,
    temperature: Temperature = 0.5,
    quiet: Quiet = False,
    shard: Shard = None,
) -> None:
    """Plan every instruction: one lw_core.Plan per line (edit them, then `write`)."""
    _main("plan", in_path, out, base_url, model, api_key, concurrency, cache, json_plan, plan_prompt, None, 8192,
          temperature, None, quiet, shard)  # fmt: skip


@app.command()
def write(
    in_path: InPath,
    out: OutPath,
    plans: Annotated[Path, typer.Option(help="Plans JSONL from `lw-agentwrite plan`.")],
    base_url: BaseUrl,
    model: Model,
    api_key: ApiKey = None,
    concurrency: Concurrency = 8,
    cache: Cache = None,
    write_prompt: WritePrompt = None,
    max_section_tokens: MaxSectionTokens = 8192,
    temperature: Temperature = 0.5,
    quiet: Quiet = False,
    shard: Shard = None,
) -> None:
    """Write every instruction from its given plan: one lw_core.Document per line."""
    _main("write", in_path, out, base_url, model, api_key, concurrency, cache, False, None, write_prompt,
          max_section_tokens, temperature, plans, quiet, shard)  # fmt: skip


@app.command()
def run(
    in_path: InPath,
    out: OutPath,
    base_url: BaseUrl,
    model: Model,
    api_key: ApiKey = None,
    concurrency: Concurrency = 8,
    cache: Cache = None,
    json_plan: JsonPlan = False,
    plan_prompt: PlanPrompt = None,
    write_prompt: WritePrompt = None,
    max_section_tokens: MaxSectionTokens = 8192,
    temperature: Temperature = 0.5,
    quiet: Quiet = False,
    shard: Shard = None,
) -> None:
    """Plan and write every instruction: one lw_core.Document per line. Killed runs resume where they stopped."""
    _main("run", in_path, out, base_url, model, api_key, concurrency, cache, json_plan, plan_prompt, write_prompt,
          max_section_tokens, temperature, None, quiet, shard)  # fmt: skip


def _main(
    mode: Mode,
    in_path: Path,
    out: Path,
    base_url: str,
    model: str,
    api_key: str | None,
    concurrency: int,
    cache: Path | None,
    json_plan: bool,
    plan_prompt: Path | None,
    write_prompt: Path | None,
    max_section_tokens: int,
    temperature: float,
    plans_path: Path | None,
    quiet: bool,
    shard: str | None,
) -> None:
    logging.basicConfig(
        level=logging.WARNING, handlers=[RichHandler(console=err, show_path=False)], format="%(message)s"
    )
    try:
        for path in (in_path, plans_path):
            if path is not None and not path.is_file():
                raise LWError(f"{path}: no such file")
        instructions = list(read_jsonl(in_path, Instruction))
        if shard is not None:
            index, count = _shard(shard)
            instructions = instructions[index::count]
        plans = read_plans(plans_path) if plans_path is not None else None
        prompts = None
        if plan_prompt is not None or write_prompt is not None:
            prompts = Prompts.default("en").replace(plan=plan_prompt, write=write_prompt)
        client = OpenAIChatClient(
            base_url=base_url,
            model=model,
            api_key=api_key,
            concurrency=concurrency,
            capabilities=Capabilities(json_schema=json_plan, concurrency=concurrency),
        )
        agent = AgentWrite(client, prompts=prompts, temperature=temperature, max_section_tokens=max_section_tokens)
        stats = _with_progress(agent, instructions, out, mode, plans, cache, concurrency, quiet)
    except LWError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    err.print(stats.summary(), markup=False, highlight=False, soft_wrap=True)


def _with_progress(
    agent: AgentWrite,
    instructions: list[Instruction],
    out: Path,
    mode: Mode,
    plans: dict | None,
    cache: Path | None,
    concurrency: int,
    quiet: bool,
) -> BatchStats:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, disable=quiet, transient=False) as bar:
        task = bar.add_task(mode, total=None, detail="")

        def update(stats: BatchStats) -> None:
            cached = f"{stats.cached_fraction:.0%}" if stats.cached_fraction is not None else "n/a"
            detail = (
                f"{stats.words} words, {stats.tokens_per_s:.1f} tok/s, {stats.steps_reused} steps reused, "
                f"prefix cache {cached}, {stats.failed} failed"
            )
            bar.update(task, total=stats.total, completed=stats.skipped + stats.finished, detail=detail)

        return run_sync(
            run_batch(
                agent, instructions, out, mode=mode, plans=plans, cache=cache, concurrency=concurrency, progress=update
            )
        )


def _shard(value: str) -> tuple[int, int]:
    index, _, count = value.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise LWError(f"--shard {value!r}: expected I/N with 0 <= I < N, e.g. --shard 0/4")
    return int(index), int(count)
