"""The ``lw-bench`` command line: predict → judge → score → report, the LongWrite-Ruler run, and compare."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from lw_core import REPETITION_THRESHOLD, BenchItem, BenchReport, OpenAIChatClient, run_sync
from lw_core.cli import (
    CLIENT_KEY_ENV,
    ApiKeyEnv,
    ApiKeyFile,
    BaseUrl,
    Concurrency,
    JsonSchema,
    Model,
    chat_client,
    new_app,
    progress_bar,
    user_errors,
)
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lw_bench.compare import compare_runs
from lw_bench.data import DATASETS, SOURCE_URL, load_items
from lw_bench.errors import BenchError
from lw_bench.judging import JudgePreset, judge
from lw_bench.report import write_report
from lw_bench.runner import StageResult, predict, read_judgments, read_predictions
from lw_bench.scoring import coverage_line, score_run

T = TypeVar("T")

app = new_app(
    "lw-bench", "LongBench-Write and LongWrite-Ruler: predict, judge, score and report with the paper's exact scores."
)
console = Console(stderr=True)

Data = Annotated[str, typer.Option("--data", help=f"A JSONL path or one of {', '.join(DATASETS)}.")]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder holding the named data sets (default: $LW_DATA_DIR, else a pinned, checked download).",
    ),
]
ItemSet = Annotated[
    str | None,
    typer.Option(
        "--data", help="The set the predictions were made on (name or JSONL path), to report coverage against."
    ),
]
TopP = Annotated[
    float | None, typer.Option(min=0.0, max=1.0, help="Nucleus sampling (paper: 0.8, GLM-4's chat default).")
]
AnswerTokens = Annotated[int, typer.Option(min=1, help="New tokens per answer (paper: 32768).")]
Temperature = Annotated[float, typer.Option(min=0.0, help="Sampling temperature (paper: 0.5).")]
Limit = Annotated[int | None, typer.Option(min=1, help="Only the first N prompts.")]
SourceUrl = Annotated[
    str, typer.Option(help="Repository root that named data sets are downloaded from (a mirror keeps its layout).")
]


def _summary(stage: str, result: StageResult) -> None:
    console.print(
        f"{stage}: {result.done} new, {result.skipped} already done, {result.failed} failed; "
        f"tokens: {result.usage.prompt_tokens} prompt, {result.usage.completion_tokens} completion "
        f"in {result.usage.calls} calls"
    )
    for error in result.errors[:5]:
        console.print(f"  [yellow]{escape(error)}[/yellow]")


def _items(data: str | None, data_dir: Path | None) -> list[BenchItem] | None:
    return load_items(data, data_dir=data_dir) if data else None


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
    line = coverage_line(report)
    console.print(f"[bold yellow]{escape(line)}[/bold yellow]" if line.startswith("WARNING") else escape(line))
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
    with progress_bar(console) as progress:
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
@user_errors
def predict_command(
    base_url: BaseUrl,
    model: Model,
    out: Annotated[Path, typer.Option("--out", "-o", help="predictions.jsonl (appended; resumes).")],
    data: Data = "longbench_write",
    data_dir: DataDir = None,
    max_tokens: AnswerTokens = 32768,
    temperature: Temperature = 0.5,
    top_p: TopP = 0.8,
    samples: Annotated[int, typer.Option(min=1, help="Answers per prompt (variance of the model).")] = 1,
    limit: Limit = None,
    concurrency: Concurrency = 4,
    api_key_env: ApiKeyEnv = CLIENT_KEY_ENV,
    api_key_file: ApiKeyFile = None,
    source_url: SourceUrl = SOURCE_URL,
) -> None:
    """Answer the benchmark's prompts with the model under test (the paper's sampling by default)."""
    items = load_items(data, data_dir=data_dir, source_url=source_url, limit=limit)
    client = chat_client(base_url, model, api_key_env=api_key_env, api_key_file=api_key_file, concurrency=concurrency)
    result = _run_predict(client, items, out, samples, max_tokens, temperature, top_p)
    if result.failed:
        raise typer.Exit(1)


@app.command("judge")
@user_errors
def judge_command(
    base_url: BaseUrl,
    model: Model,
    predictions: Annotated[Path, typer.Option("--predictions", exists=True, dir_okay=False, help="predictions.jsonl.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="judgments.jsonl (appended; resumes).")],
    preset: Annotated[
        JudgePreset,
        typer.Option(help="paper: the original judge.txt, reply read as eval_quality.py; lw: ours (see README)."),
    ] = "paper",
    replicates: Annotated[int, typer.Option(min=1, help="Judge each answer k times: mean ± std per dimension.")] = 1,
    template: Annotated[
        Path | None, typer.Option(help="Your own judge prompt with $INST$ and $RESPONSE$ (default: the preset's).")
    ] = None,
    retries: Annotated[int, typer.Option(min=0, help="Retries of an incomplete reply (paper: 4).")] = 4,
    temperature: float = 0.5,
    max_tokens: Annotated[int, typer.Option(min=1)] = 1024,
    retry_failed: Annotated[bool, typer.Option(help="Also retry judgments that failed in an earlier run.")] = False,
    json_schema: JsonSchema = False,
    concurrency: Concurrency = 4,
    api_key_env: ApiKeyEnv = CLIENT_KEY_ENV,
    api_key_file: ApiKeyFile = None,
) -> None:
    """Rate each prediction on the six quality dimensions with a judge model."""
    if json_schema and preset == "paper":
        console.print("[yellow]--json-schema is used by --preset lw only; the paper's judge reads free text[/yellow]")
    preds = _given(predictions, read_predictions)
    client = chat_client(base_url, model, api_key_env=api_key_env, api_key_file=api_key_file, json_schema=json_schema,
                         concurrency=concurrency)  # fmt: skip
    with progress_bar(console) as progress:
        task = progress.add_task(f"judge {model}", total=len(preds) * replicates)
        result = run_sync(
            judge(
                client,
                preds,
                out,
                preset=preset,
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
@user_errors
def score_command(
    predictions: Annotated[Path, typer.Option("--predictions", exists=True, dir_okay=False)],
    judgments: Annotated[Path | None, typer.Option("--judgments", exists=True, dir_okay=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the BenchReport JSON here.")] = None,
    data: ItemSet = None,
    data_dir: DataDir = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name shown in the report (default: --data).")] = None,
) -> None:
    """Compute S_l (and S_q, S with judgments), overall, per length range and per type, with coverage."""
    report = score_run(
        _given(predictions, read_predictions),
        _given(judgments, read_judgments) if judgments else (),
        items=_items(data, data_dir),
        dataset=dataset or data,
    )
    _print_report(report)
    if out is not None:
        from lw_core import atomic_write

        atomic_write(out, report.model_dump_json(indent=2))


@app.command("report")
@user_errors
def report_command(
    predictions: Annotated[Path, typer.Option("--predictions", exists=True, dir_okay=False)],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.md, report.json and report.png.")],
    judgments: Annotated[Path | None, typer.Option("--judgments", exists=True, dir_okay=False)] = None,
    compare: Annotated[
        list[Path] | None, typer.Option("--compare", exists=True, help="Other runs' report.json, side by side.")
    ] = None,
    data: ItemSet = None,
    data_dir: DataDir = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name shown in the report (default: --data).")] = None,
) -> None:
    """Write the markdown, JSON and PNG report of a run, with a comparison table over other runs."""
    report = score_run(
        _given(predictions, read_predictions),
        _given(judgments, read_judgments) if judgments else (),
        items=_items(data, data_dir),
        dataset=dataset or data,
    )
    others = [_read_report(path) for path in compare or []]
    paths = write_report(report, out_dir, compare=others)
    _print_report(report)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))


def _given(path: Path, read: Callable[[Path], list[T]]) -> list[T]:
    """The records of a file named on the command line: one without any is an error, not an empty report."""
    records = read(path)
    if not records:
        raise BenchError(f"{path}: holds no records")
    return records


def _read_report(path: Path) -> BenchReport:
    from pydantic import ValidationError

    try:
        return BenchReport.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise BenchError(f"{path}: not a lw-bench report.json ({exc.errors()[0]['msg']})") from None


@app.command("ruler")
@user_errors
def ruler_command(
    base_url: BaseUrl,
    model: Model,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for predictions.jsonl and report.{md,json,png}")],
    data: Data = "longwrite_ruler",
    data_dir: DataDir = None,
    max_tokens: AnswerTokens = 32768,
    temperature: Temperature = 0.5,
    top_p: TopP = 0.8,
    limit: Limit = None,
    concurrency: Concurrency = 4,
    api_key_env: ApiKeyEnv = CLIENT_KEY_ENV,
    api_key_file: ApiKeyFile = None,
    source_url: SourceUrl = SOURCE_URL,
) -> None:
    """LongWrite-Ruler: output length (mean, median, max) per required length, and S_l; no judge."""
    items = load_items(data, data_dir=data_dir, source_url=source_url, limit=limit)
    client = chat_client(base_url, model, api_key_env=api_key_env, api_key_file=api_key_file, concurrency=concurrency)
    predictions_path = out_dir / "predictions.jsonl"
    result = _run_predict(client, items, predictions_path, 1, max_tokens, temperature, top_p)
    report = score_run(read_predictions(predictions_path), items=items, dataset=data)
    write_report(report, out_dir, show_length_table=True)
    _print_report(report)
    if result.failed:
        raise typer.Exit(1)


def _load_run(path: Path, data: str | None, data_dir: Path | None) -> BenchReport:
    """A run given as report.json, or a folder holding report.json or predictions.jsonl (+ judgments.jsonl)."""
    if path.is_file():
        return _read_report(path)
    if (path / "report.json").is_file():
        return _read_report(path / "report.json")
    if (path / "predictions.jsonl").is_file():
        judgments = path / "judgments.jsonl"
        return score_run(
            read_predictions(path / "predictions.jsonl"),
            read_judgments(judgments) if judgments.is_file() else (),
            items=_items(data, data_dir),
            dataset=data,
        )
    raise BenchError(f"{path}: no report.json or predictions.jsonl there; give a lw-bench run folder or report.json")


def _labelled(values: list[str], option: str) -> dict[str, Path]:
    pairs: dict[str, Path] = {}
    for value in values:
        label, sep, path = value.partition("=")
        if not sep or not label or not path:
            raise typer.BadParameter(f"expected LABEL=PATH, got {value!r}", param_hint=option)
        pairs[label] = Path(path)
    return pairs


@app.command("compare")
@user_errors
def compare_command(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (report.json or predictions.jsonl) or report.json.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for comparison.{md,json,png} (and ruler.png).")],
    labels: Annotated[
        str | None, typer.Option(help="Comma-separated names, one per run in order, e.g. base,sft,dpo.")
    ] = None,
    ruler: Annotated[
        list[str] | None, typer.Option(help="LABEL=PATH of a LongWrite-Ruler run (folder or report.json); repeatable.")
    ] = None,
    small_judge: Annotated[
        bool, typer.Option(help="Say under the table that the judge is a small model (S_q is not quality).")
    ] = False,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Repeated-4-gram ratio above which an output is degenerate.")
    ] = REPETITION_THRESHOLD,
    data: ItemSet = None,
    data_dir: DataDir = None,
) -> None:
    """Set runs side by side as the paper does (S, S_l, S_q overall and per range), with length plots."""
    names = [n.strip() for n in labels.split(",")] if labels else [p.stem if p.is_file() else p.name for p in runs]
    if len(names) != len(runs):
        raise typer.BadParameter(f"{len(names)} labels for {len(runs)} runs", param_hint="--labels")
    if len(set(names)) != len(names):
        raise typer.BadParameter(f"labels must differ: {', '.join(names)}", param_hint="--labels")
    reports = {name: _load_run(path, data, data_dir) for name, path in zip(names, runs, strict=True)}
    rulers = {label: _load_run(path, None, None) for label, path in _labelled(ruler or [], "--ruler").items()}
    paths = compare_runs(reports, out, ruler=rulers, small_judge=small_judge, threshold=threshold)
    Console().print(paths["md"].read_text(encoding="utf-8"))
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
