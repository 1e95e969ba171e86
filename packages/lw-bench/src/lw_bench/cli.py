"""The ``lw-bench`` command line: predict → judge → score → report, and the LongWrite-Ruler run."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from lw_core import BenchItem, BenchReport, Capabilities, LWError, OpenAIChatClient, run_sync
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from lw_bench.data import DATASETS, SOURCE_URL, load_items
from lw_bench.report import write_report
from lw_bench.runner import StageResult, judge, predict, read_judgments, read_predictions
from lw_bench.scoring import score_run

app = typer.Typer(
    name="lw-bench",
    no_args_is_help=True,
    help="LongBench-Write and LongWrite-Ruler: predict, judge, score and report with the paper's exact scores.",
)
console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

BaseUrl = Annotated[str, typer.Option("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")]
Model = Annotated[str, typer.Option("--model", help="Model name as the server knows it.")]
ApiKeyEnv = Annotated[
    str, typer.Option("--api-key-env", help="Environment variable holding the API key (never printed).")
]
JsonSchema = Annotated[
    bool, typer.Option("--json-schema/--no-json-schema", help="The server honours JSON-schema response_format.")
]
Concurrency = Annotated[int, typer.Option("--concurrency", min=1, help="Requests in flight.")]
Data = Annotated[str, typer.Option("--data", help=f"A JSONL path or one of {', '.join(DATASETS)}.")]
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where named data sets live (default: the lw cache; downloaded).")
]


def _user_errors(func: F) -> F:
    """LWErrors become a one-line message and exit code 1, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (LWError, OSError) as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _client(base_url: str, model: str, api_key_env: str, json_schema: bool, concurrency: int) -> OpenAIChatClient:
    return OpenAIChatClient(
        base_url=base_url,
        model=model,
        api_key=os.environ.get(api_key_env) if api_key_env else None,
        concurrency=concurrency,
        capabilities=Capabilities(json_schema=json_schema, concurrency=concurrency),
    )


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _summary(stage: str, result: StageResult) -> None:
    console.print(
        f"{stage}: {result.done} new, {result.skipped} already done, {result.failed} failed; "
        f"tokens: {result.usage.prompt_tokens} prompt, {result.usage.completion_tokens} completion "
        f"in {result.usage.calls} calls"
    )
    for error in result.errors[:5]:
        console.print(f"  [yellow]{escape(error)}[/yellow]")


def _print_report(report: BenchReport) -> None:
    table = Table(title=f"{report.model or 'model'} on {report.dataset or 'LongBench-Write'}")
    for column in ("slice", "n", "judged", "S_l", "S_q", "S"):
        table.add_column(column, justify="left" if column == "slice" else "right")
    for group in [report.overall, *report.by_length, *report.by_type]:
        if group.n:
            table.add_row(
                group.name,
                str(group.n),
                str(group.n_judged),
                *("–" if v is None else f"{v:.1f}" for v in (group.length_score, group.quality_score, group.score)),
            )
    Console().print(table)
    if report.judge_failures:
        console.print(f"[yellow]{report.judge_failures} judgments failed after retries (left out of S_q)[/yellow]")


def _run_predict(
    client: OpenAIChatClient,
    items: list[BenchItem],
    out: Path,
    samples: int,
    max_tokens: int,
    temperature: float,
    top_p: float | None,
) -> StageResult:
    with _progress() as progress:
        task = progress.add_task(f"predict {client.model}", total=len(items) * samples)
        result = run_sync(
            predict(
                client,
                items,
                out,
                samples=samples,
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                concurrency=client.concurrency,
                on_record=lambda _: progress.advance(task),
            )
        )
        progress.update(task, completed=len(items) * samples)
    _summary("predict", result)
    return result


@app.command("predict")
@_user_errors
def predict_command(
    base_url: BaseUrl,
    model: Model,
    out: Annotated[Path, typer.Option("--out", help="predictions.jsonl (appended; resumes).")],
    data: Data = "longbench_write",
    data_dir: DataDir = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="New tokens per answer (paper: 32768).")] = 32768,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature (paper: 0.5).")] = 0.5,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling (off by default, like the paper).")] = None,
    samples: Annotated[int, typer.Option(min=1, help="Answers per prompt (variance of the model).")] = 1,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N prompts.")] = None,
    concurrency: Concurrency = 4,
    api_key_env: ApiKeyEnv = "",
    source_url: Annotated[str, typer.Option(help="Where named data sets are downloaded from.")] = SOURCE_URL,
) -> None:
    """Answer the benchmark's prompts with the model under test."""
    items = load_items(data, data_dir=data_dir, source_url=source_url, limit=limit)
    client = _client(base_url, model, api_key_env, False, concurrency)
    result = _run_predict(client, items, out, samples, max_tokens, temperature, top_p)
    if result.failed:
        raise typer.Exit(1)


@app.command("judge")
@_user_errors
def judge_command(
    base_url: BaseUrl,
    model: Model,
    predictions: Annotated[Path, typer.Option("--predictions", exists=True, dir_okay=False, help="predictions.jsonl.")],
    out: Annotated[Path, typer.Option("--out", help="judgments.jsonl (appended; resumes).")],
    replicates: Annotated[int, typer.Option(min=1, help="Judge each answer k times: mean ± std per dimension.")] = 1,
    template: Annotated[
        Path | None, typer.Option(help="Judge prompt with $INST$ and $RESPONSE$ (e.g. the paper's judge.txt).")
    ] = None,
    retries: Annotated[int, typer.Option(min=0, help="Retries of an incomplete reply (paper: 4).")] = 4,
    temperature: float = 0.5,
    max_tokens: Annotated[int, typer.Option(min=1)] = 1024,
    retry_failed: Annotated[bool, typer.Option(help="Also retry judgments that failed in an earlier run.")] = False,
    json_schema: JsonSchema = False,
    concurrency: Concurrency = 4,
    api_key_env: ApiKeyEnv = "",
) -> None:
    """Rate each prediction on the six quality dimensions with a judge model."""
    preds = read_predictions(predictions)
    client = _client(base_url, model, api_key_env, json_schema, concurrency)
    with _progress() as progress:
        task = progress.add_task(f"judge {model}", total=len(preds) * replicates)
        result = run_sync(
            judge(
                client,
                preds,
                out,
                replicates=replicates,
                template=template,
                retries=retries,
                temperature=temperature,
                max_tokens=max_tokens,
                concurrency=concurrency,
                retry_failed=retry_failed,
                on_record=lambda _: progress.advance(task),
            )
        )
        progress.update(task, completed=len(preds) * replicates)
    _summary("judge", result)


@app.command("score")
@_user_errors
def score_command(
    predictions: Annotated[Path, typer.Option("--predictions", exists=True, dir_okay=False)],
    judgments: Annotated[Path | None, typer.Option("--judgments", exists=True, dir_okay=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the BenchReport JSON here.")] = None,
    dataset: str | None = None,
) -> None:
    """Compute S_l (and S_q, S with judgments), overall, per length range and per type."""
    report = score_run(read_predictions(predictions), read_judgments(judgments) if judgments else (), dataset=dataset)
    _print_report(report)
    if out is not None:
        from lw_core import atomic_write

        atomic_write(out, report.model_dump_json(indent=2))


@app.command("report")
@_user_errors
def report_command(
    predictions: Annotated[Path, typer.Option("--predictions", exists=True, dir_okay=False)],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where report.md, report.json and report.png go.")],
    judgments: Annotated[Path | None, typer.Option("--judgments", exists=True, dir_okay=False)] = None,
    compare: Annotated[
        list[Path] | None, typer.Option("--compare", exists=True, help="Other runs' report.json, side by side.")
    ] = None,
    dataset: str | None = None,
) -> None:
    """Write the markdown, JSON and PNG report of a run, with a comparison table over other runs."""
    report = score_run(read_predictions(predictions), read_judgments(judgments) if judgments else (), dataset=dataset)
    others = [_read_report(path) for path in compare or []]
    paths = write_report(report, out_dir, compare=others)
    _print_report(report)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))


def _read_report(path: Path) -> BenchReport:
    from pydantic import ValidationError

    from lw_bench.errors import BenchError

    try:
        return BenchReport.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise BenchError(f"{path}: not a lw-bench report.json ({exc.errors()[0]['msg']})") from None


@app.command("ruler")
@_user_errors
def ruler_command(
    base_url: BaseUrl,
    model: Model,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Gets predictions.jsonl and report.{md,json,png}.")],
    data: Data = "longwrite_ruler",
    data_dir: DataDir = None,
    max_tokens: Annotated[int, typer.Option(min=1)] = 32768,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.5,
    limit: Annotated[int | None, typer.Option(min=1)] = None,
    concurrency: Concurrency = 4,
    api_key_env: ApiKeyEnv = "",
    source_url: str = SOURCE_URL,
) -> None:
    """LongWrite-Ruler: how far the model's output length follows the requested length (S_l only)."""
    items = load_items(data, data_dir=data_dir, source_url=source_url, limit=limit)
    client = _client(base_url, model, api_key_env, False, concurrency)
    predictions_path = out_dir / "predictions.jsonl"
    result = _run_predict(client, items, predictions_path, 1, max_tokens, temperature, None)
    report = score_run(read_predictions(predictions_path), dataset=data)
    write_report(report, out_dir)
    _print_report(report)
    if result.failed:
        raise typer.Exit(1)
