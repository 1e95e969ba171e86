"""The umbrella ``lw`` command: mounts every package's CLI (``lw bench ...``) plus ``lw reproduce``."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from lw_agentwrite.cli import app as agentwrite_app
from lw_bench.cli import app as bench_app
from lw_core import LWError
from lw_data.cli import app as data_app
from lw_serve.cli import app as serve_app
from lw_train.cli import app as train_app
from rich.console import Console
from rich.logging import RichHandler

app = typer.Typer(name="lw", no_args_is_help=True, help="lw: the LongWriter toolkit.")
app.add_typer(agentwrite_app, name="agentwrite")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(bench_app, name="bench")
app.add_typer(serve_app, name="serve")
console = Console()


@app.command()
def reproduce(
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML or YAML file of ReproduceConfig fields"),
    name: str | None = typer.Option(None, help="run folder name under --runs"),
    model: str | None = typer.Option(None, help="model name, GGUF file or HF folder"),
    backend: str | None = typer.Option(None, help="llamacpp | transformers | sglang (default: CPU default)"),
    instructions: Path | None = typer.Option(None, help="instructions JSONL (default: bundled demo set)"),
    n_instructions: int | None = typer.Option(None, help="how many instructions AgentWrite writes"),
    train_steps: int | None = typer.Option(None, help="SFT optimizer steps (0 skips training)"),
    bench_items: int | None = typer.Option(None, help="LongBench-Write items per model"),
    bench_max_tokens: int | None = typer.Option(None, help="max new tokens per benchmark answer"),
    bench_data_dir: Path | None = typer.Option(
        None, envvar="LW_BENCH_DATA_DIR", help="folder with the LongBench-Write files (else cache, then download)"
    ),
    runs: Path = typer.Option(Path("runs"), help="where run folders go"),
    fresh: bool = typer.Option(False, help="start the run folder over instead of resuming"),
) -> None:
    """Run the paper's pipeline end to end (AgentWrite → SFT data → train → LongBench-Write), resumably."""
    from lw_reproduce.config import ReproduceConfig
    from lw_reproduce.pipeline import reproduce as run_pipeline

    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console)])
    for chatty in ("httpx", "openai"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    overrides = {
        "name": name,
        "model": model,
        "backend": backend,
        "instructions": instructions,
        "n_instructions": n_instructions,
        "train_steps": train_steps,
        "bench_items": bench_items,
        "bench_max_tokens": bench_max_tokens,
        "bench_data_dir": bench_data_dir if bench_data_dir is None or bench_data_dir.is_dir() else None,
    }
    try:
        cfg = ReproduceConfig.load(config, overrides)
        run_pipeline(cfg, runs, fresh=fresh, say=console.print)
    except LWError as exc:
        console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(1) from None
