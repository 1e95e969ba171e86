"""The umbrella ``lw`` command: mounts every package's CLI (``lw bench ...``) plus ``lw reproduce``."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import typer
from lw_agentwrite.cli import app as agentwrite_app
from lw_bench.cli import app as bench_app
from lw_core.cli import App, Assignments, Verbose, configure_logging, new_app, user_errors
from lw_data.cli import app as data_app
from lw_serve.cli import app as serve_app
from lw_train.cli import app as train_app
from rich.console import Console
from rich.markup import escape

PACKAGES = ("lw-reproduce", "lw-core", "lw-agentwrite", "lw-data", "lw-train", "lw-bench", "lw-serve")
app = new_app("lw", "lw: the LongWriter toolkit.", *PACKAGES)  # `lw --version`: every package's, for bug reports
app.add_typer(agentwrite_app, name="agentwrite")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(bench_app, name="bench")
app.add_typer(serve_app, name="serve")
reproduce_app = App(
    help="The paper's pipeline end to end (AgentWrite → SFT data → train → LongBench-Write), resumably."
)
app.add_typer(reproduce_app, name="reproduce")
console = Console()  # results: the dry run's plan, a run's status
progress = Console(stderr=True)  # a running pipeline's stages and progress, beside its logs


def _say(text: str) -> None:
    # not rich markup (a stage name in brackets would vanish), and never wrapped: tables and paths stay whole
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _progress(text: str) -> None:
    progress.print(text, markup=False, highlight=False, soft_wrap=True)


@reproduce_app.callback(invoke_without_command=True)
@user_errors
def reproduce(
    ctx: typer.Context,
    profile: str = typer.Option("smoke", help="smoke (pipeline check), cpu (the 2-core demonstration) or paper (GPUs)"),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML or YAML file over the profile"),
    assignments: Assignments = None,
    name: str | None = typer.Option(None, help="run folder name under --runs (default: the profile's)"),
    runs: Path = typer.Option(Path("runs"), help="where run folders go"),
    start: str | None = typer.Option(None, "--from", help="first stage to run (earlier ones must be done)"),
    stop: str | None = typer.Option(None, "--until", help="last stage to run"),
    fresh: bool = typer.Option(False, help="start over: the old run folder is moved aside, not deleted"),
    dry_run: bool = typer.Option(False, help="print the plan, estimated tokens, cost and GPU hours; run nothing"),
    bench_data_dir: Path | None = typer.Option(
        None, envvar="LW_BENCH_DATA_DIR", help="folder with the LongBench-Write files (default: LW_DATA_DIR)"
    ),
    verbose: Verbose = False,
) -> None:
    """Run (or resume) a profile; `lw reproduce status` shows where a run stands."""
    if ctx.invoked_subcommand is not None:
        return
    from lw_core.config import parse_assignments

    from lw_reproduce.config import ReproduceConfig
    from lw_reproduce.pipeline import reproduce as run_pipeline
    from lw_reproduce.pipeline import selected_stages

    configure_logging(verbose, default=logging.INFO)  # a run's log keeps the stages' info lines
    overrides = parse_assignments(assignments or ())
    if name is not None:
        overrides["name"] = name
    if bench_data_dir is not None and bench_data_dir.is_dir():
        overrides.setdefault("bench.data_dir", str(bench_data_dir))
    cfg = ReproduceConfig.load(profile, config, overrides)
    if dry_run:
        _dry_run(cfg, selected_stages(cfg, start, stop))
        return
    run_pipeline(cfg, runs, fresh=fresh, start=start, stop=stop, say=_progress)


def _dry_run(cfg: object, stages: list[str]) -> None:
    from lw_reproduce.config import ReproduceConfig
    from lw_reproduce.estimate import dry_run

    assert isinstance(cfg, ReproduceConfig)
    plan = dry_run(cfg)
    _say(f"profile {cfg.profile} ({cfg.purpose}), run folder name {cfg.name!r}, config hash {cfg.digest()}")
    _say(f"stages: {' → '.join(stages)}")
    for line in plan.resolved:
        _say(line)
    _say(f"token counts: {plan.counter}")
    _say(plan.table())
    if plan.minutes:
        _say("minutes on a 2-core CPU (the embedded model's measured rates; other machines and models differ):")
        _say(plan.minutes_table())
    for check in plan.checks:
        console.print(f"[yellow]check:[/yellow] {escape(check)}", highlight=False, soft_wrap=True)
    _say("nothing was run (--dry-run)")


@reproduce_app.command()
@user_errors
def fork(
    source: str = typer.Argument(..., help="the run folder to start from"),
    name: str = typer.Argument(..., help="the new run folder's name"),
    stages: str = typer.Option(..., help="finished stages to copy whole, comma-separated (the new run skips them)"),
    records: str = typer.Option("", help="stages whose records to copy without their done marker and models"),
    runs: Path = typer.Option(Path("runs"), help="where run folders are"),
) -> None:
    """Start a lever's run from another run's finished stages; then run `lw reproduce --name NAME` with the lever."""
    from lw_reproduce.pipeline import STAGES
    from lw_reproduce.rundir import RunDir

    chosen = [s.strip() for s in stages.split(",") if s.strip()]
    resumed = [s.strip() for s in records.split(",") if s.strip()]
    unknown = [s for s in (*chosen, *resumed) if s not in STAGES]
    if unknown:
        raise typer.BadParameter(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(STAGES)}")
    target = RunDir.fork(runs, source, name, chosen, resumed)
    _say(
        f"{target}: {', '.join(chosen)} copied from {runs / source}"
        + (f"; records of {', '.join(resumed)}" if resumed else "")
    )


@reproduce_app.command()
@user_errors
def status(
    name: str = typer.Argument("smoke", help="the run folder's name"),
    runs: Path = typer.Option(Path("runs"), help="where run folders are"),
) -> None:
    """Stages done, record counts and elapsed time of a run folder."""
    from lw_reproduce.pipeline import STAGES, selected_stages, stage_records
    from lw_reproduce.rundir import RunDir

    run = RunDir.existing(runs, name)
    manifest = json.loads((run.root / "manifest.json").read_text())
    wanted = selected_stages(run.config)
    records = stage_records(run)
    _say(f"{run.root}: profile {run.config.profile}, config hash {manifest.get('config_hash')}")
    total = 0.0
    for stage in STAGES:
        if stage not in wanted:
            continue
        if run.is_done(stage):
            elapsed = float(run.summary(stage).get("elapsed_s", 0.0))
            total += elapsed
            state = f"done in {elapsed:,.0f} s"
        elif stage in records:
            state = "started"
        else:
            state = "to do"
        counts = ", ".join(f"{file}: {n}" for file, n in records.get(stage, {}).items())
        _say(f"  {stage:<16} {state:<18} {counts}")
    created = manifest.get("created")
    since = f", folder created {time.strftime('%Y-%m-%d %H:%M', time.localtime(created))}" if created else ""
    _say(f"elapsed in finished stages: {total / 60:,.1f} min{since}")
