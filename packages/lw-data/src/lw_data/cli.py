"""The `lw-data` command line: instructions, build-sft, build-dpo, mix, stats, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from lw_core.cli import new_app, progress_bar, user_errors, validated
from rich.console import Console
from rich.table import Table

from lw_data.errors import DataError

app = new_app("lw-data", "Build LongWriter-style SFT data and DPO pairs, fast.")
console = Console(stderr=True, soft_wrap=True)

Output = Annotated[Path, typer.Option("--out", "-o", help="output file (.jsonl or .parquet)")]
Seed = Annotated[int, typer.Option(help="random seed for sampling and shuffling")]


def _table(frame: Any, title: str, width: int) -> Table:
    """A table of ``frame`` at least ``width`` wide; wider when its values need it, since no value is ever cut."""
    table = Table(title=title, box=None, pad_edge=False, header_style="bold")  # no rules: ten columns fit in 80
    rows = [[_cell(v) for v in row] for row in frame.iter_rows()]
    for i, column in enumerate(frame.columns):
        header = column.replace("_", " ")  # headers may wrap at spaces
        widest = max([len(row[i]) for row in rows] + [len(word) for word in header.split()])
        justify: Literal["right", "left"] = "right" if frame.schema[column].is_numeric() else "left"
        table.add_column(header, justify=justify, min_width=widest)
    for row in rows:
        table.add_row(*row)
    table.width = max(width, sum(c.min_width or 0 for c in table.columns) + 2 * (len(table.columns) - 1))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if abs(value) >= 100:  # word counts: whole numbers, or a median halfway between two
            return f"{value:,.0f}" if value.is_integer() else f"{value:,.1f}"
        return f"{value:.3g}"  # ratios
    return f"{value:,}" if isinstance(value, int) else str(value)


def _print_stats(measured: Any, png: Path | None, title: str) -> None:
    from lw_data.stats import plot, summarize

    if measured.height == 0:
        console.print("no rows to summarise")
        return
    out = Console()
    out.print(_table(summarize(measured), title, out.width), crop=False)  # a narrow terminal wraps lines
    if png is not None:
        plot(measured, png, title=title)
        console.print(f"plot: {png}")


@app.command()
@user_errors
def instructions(
    input: Annotated[
        Path | None,
        typer.Argument(help="prompts: .jsonl, .parquet, .csv or a saved HF dataset; none: generate instructions"),
    ] = None,
    output: Annotated[Path, typer.Option("--out", "-o", help="output file (.jsonl or .parquet)")] = Path(
        "instructions.jsonl"
    ),
    dropped: Annotated[Path | None, typer.Option(help="where to write duplicates/empty prompts with reasons")] = None,
    min_length: Annotated[
        int | None, typer.Option(help="keep requested lengths >= this (generating: the shortest, default 100)")
    ] = None,
    max_length: Annotated[
        int | None, typer.Option(help="keep requested lengths <= this (generating: the longest, default 3000)")
    ] = None,
    language: Annotated[
        list[str],
        typer.Option(help="keep these languages (en, zh; generating: write in these, default en); repeatable"),
    ] = [],  # noqa: B006
    type: Annotated[list[str], typer.Option(help="keep these types; repeatable")] = [],  # noqa: B006
    require_length: Annotated[bool, typer.Option(help="drop prompts that state no length")] = False,
    n: Annotated[int | None, typer.Option("-n", "--n", help="sample (generate) this many")] = None,
    kind: Annotated[
        Literal["long", "general"], typer.Option(help="generating: long (writing tasks) or general (short requests)")
    ] = "long",
    seed: Seed = 0,
) -> None:
    """Normalise, dedupe (exact and near), tag and select instructions from a file; or, with no file, generate them.

    Generated instructions are lw-data's own, disjoint from LongBench-Write: writing tasks with requested lengths
    spread log-uniformly (stated in the prompt), or short general requests (--kind general).
    """
    from lw_data.io import write_table

    if input is None:
        options = (("--dropped", dropped), ("--type", type), ("--require-length", require_length))
        unused = [name for name, value in options if value]
        if unused:
            raise typer.BadParameter(f"{', '.join(unused)} only apply to an INPUT file")
        _generate(
            output, n=200 if n is None else n, kind=kind, seed=seed, lo=min_length, hi=max_length, languages=language
        )
        return
    from lw_data.instructions import prepare_instructions, select_instructions
    from lw_data.io import read_table

    kept, removed = prepare_instructions(read_table(input), source=str(input))
    chosen = select_instructions(
        kept,
        min_length=min_length,
        max_length=max_length,
        languages=language,
        types=type,
        require_length=require_length,
        n=n,
        seed=seed,
    )
    write_table(chosen, output)
    if dropped is not None:
        write_table(removed, dropped)
    reasons = ", ".join(f"{r}: {c}" for r, c in removed.group_by("reason").len().sort("reason").iter_rows())
    console.print(f"{kept.height + removed.height} read, {removed.height} dropped ({reasons or 'none'})")
    console.print(f"{chosen.height} selected → {output}")


def _generate(
    output: Path,
    *,
    n: int,
    kind: Literal["long", "general"],
    seed: int,
    lo: int | None,
    hi: int | None,
    languages: list[str],
) -> None:
    import polars as pl

    from lw_data.generator import generate_instructions
    from lw_data.io import write_table

    rows = generate_instructions(
        n,
        seed=seed,
        kind=kind,
        min_words=100 if lo is None else lo,
        max_words=3000 if hi is None else hi,
        languages=languages or ["en"],
    )
    write_table(rows, output)
    counts = ", ".join(f"{lang}: {c}" for lang, c in rows.group_by("language").len().sort("language").iter_rows())
    lengths = rows.select(pl.col("length").min().alias("lo"), pl.col("length").max().alias("hi"), pl.median("length"))
    lo, hi, median = lengths.row(0)
    spread = f"; requested {lo}–{hi}, median {median:g}" if hi is not None else ""
    console.print(f"{rows.height} {kind} instructions ({counts or 'none'}{spread}) → {output}")


@app.command("build-sft")
@user_errors
def build_sft(
    documents: Annotated[Path, typer.Argument(help="AgentWrite documents (.jsonl of lw-core Document)")],
    output: Output,
    rejects: Annotated[Path | None, typer.Option(help="rejected rows with reasons [OUTPUT.rejects.jsonl]")] = None,
    min_words: int = 500,
    max_words: int = 40_000,
    min_ratio: Annotated[float, typer.Option(help="min words / requested length")] = 0.5,
    max_ratio: Annotated[float, typer.Option(help="max words / requested length")] = 2.0,
    max_repetition: Annotated[
        float | None, typer.Option(help="max repeated 4-gram ratio [default: lw-core's REPETITION_THRESHOLD, 0.3]")
    ] = None,
    keep_truncated: bool = False,
    strip_plan_echo: Annotated[
        bool, typer.Option(help="remove plan-step labels and echoed prompts from sections (not the paper's)")
    ] = False,
    strip_task_talk: Annotated[
        bool, typer.Option(help="remove sentences that talk about the writing task, e.g. a rewrite (not the paper's)")
    ] = False,
    strip_headings: Annotated[
        bool,
        typer.Option(help="remove section headings: markdown headings, lines of bold text alone (not the paper's)"),
    ] = False,
    relabel_length: Annotated[
        bool,
        typer.Option(help="hindsight relabelling: each prompt asks for the words its answer has (not the paper's)"),
    ] = False,
    plan_augmented: Annotated[
        bool,
        typer.Option(help="answers start with the AgentWrite plan, then the text (the paper's plan-augmented data)"),
    ] = False,
    system: Annotated[str | None, typer.Option(help="system prompt to put first in every chat")] = None,
    png: Annotated[Path | None, typer.Option(help="save the length plots here")] = None,
    batch_rows: Annotated[int, typer.Option(help="documents per batch (bounds memory)")] = 5_000,
) -> None:
    """Join and filter AgentWrite documents into SFT chats (`messages`), with a rejects file."""
    from lw_data.sft import SFTFilters, build_sft_file

    values = {
        "min_words": min_words,
        "max_words": max_words,
        "min_length_ratio": min_ratio,
        "max_length_ratio": max_ratio,
        "keep_truncated": keep_truncated,
        "strip_plan_echo": strip_plan_echo,
        "strip_task_talk": strip_task_talk,
        "strip_headings": strip_headings,
        "relabel_length": relabel_length,
        "plan_augmented": plan_augmented,
        "system_prompt": system,
        **({} if max_repetition is None else {"max_repetition": max_repetition}),
    }
    options = {"min_length_ratio": "--min-ratio", "max_length_ratio": "--max-ratio", "system_prompt": "--system"}
    filters = validated(SFTFilters, values, options)
    _not_empty(documents)
    total = _count_lines(documents)
    with progress_bar(console, transient=True) as progress:
        task = progress.add_task("build-sft", total=total)
        summary = build_sft_file(
            documents,
            output,
            rejects,
            filters,
            batch_rows=batch_rows,
            progress=lambda n: progress.advance(task, n),
        )
    reasons = ", ".join(f"{r}: {c}" for r, c in sorted(summary.rejected.items())) or "none"
    console.print(f"{summary.read} documents, {summary.kept} kept → {output}; rejected: {reasons}")
    _print_stats(summary.measures, png, f"SFT data: {output.name}")


@app.command("build-dpo")
@user_errors
def build_dpo(
    predictions: Annotated[Path, typer.Argument(help="candidates: .jsonl of lw-core Prediction (several samples)")],
    judgments: Annotated[
        Path | None, typer.Argument(help="their scores: .jsonl of lw-core Judgment (not needed with --length-weight 1)")
    ] = None,
    *,
    output: Output,
    rejects: Annotated[Path | None, typer.Option(help="prompts without a pair, with reasons")] = None,
    rejected: Annotated[
        Literal["random", "worst"],
        typer.Option(help="random: a seeded draw among the non-best (the paper's); worst: the lowest score"),
    ] = "random",
    min_margin: Annotated[float, typer.Option(help="minimum score gap chosen − rejected, 0–100 (paper: 0)")] = 0.0,
    length_weight: Annotated[
        float, typer.Option(help="weight of the length score in the overall score (1: length alone, no judgments)")
    ] = 0.5,
    length_measure: Annotated[
        Literal["words", "loop_free"],
        typer.Option(help="words: every word (the paper's); loop_free: the words before a loop starts (ours)"),
    ] = "words",
    system: Annotated[str | None, typer.Option(help="system prompt to put first in every prompt")] = None,
    general: Annotated[
        Path | None, typer.Option(help="general preference pairs to mix in (TRL prompt/chosen/rejected rows)")
    ] = None,
    long_fraction: Annotated[float, typer.Option(help="with --general: share of long-writing pairs")] = 0.5,
    seed: Seed = 0,
) -> None:
    """Pick chosen/rejected per prompt by length and quality scores (and mix in general pairs); write TRL records."""
    from lw_data.dpo import DPORule
    from lw_data.dpo import build_dpo as pick
    from lw_data.io import read_table, write_table
    from lw_data.mixing import mix as blend

    preds = read_table(_not_empty(predictions))
    judged = read_table(_not_empty(judgments)) if judgments is not None else None
    for path, frame, needed in (
        (predictions, preds, ("id", "prompt", "response", "length")),
        (judgments, judged, ("id", "scores")),
    ):
        missing = [c for c in needed if frame is not None and c not in frame.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    values = {
        "rejected": rejected,
        "seed": seed,
        "length_weight": length_weight,
        "length_measure": length_measure,
        "min_margin": min_margin,
        "system_prompt": system,
    }
    rule = validated(DPORule, values, {"system_prompt": "--system"})
    pairs, unused = pick(preds, judged, rule)
    made = pairs.height
    if general is not None:
        pairs = blend(pairs, read_table(general), long_fraction=long_fraction, seed=seed)
    write_table(pairs, output)
    write_table(unused, rejects or output.with_name(output.stem + ".rejects.jsonl"))
    mixed = f" ({(pairs['source'] == 'long').sum()} of them with {pairs.height} in all)" if general else ""
    console.print(f"{made} pairs{mixed} → {output}; {unused.height} prompts without a pair")


@app.command()
@user_errors
def mix(
    long: Annotated[Path, typer.Argument(help="long-writing SFT chats (messages) or preference pairs")],
    general: Annotated[Path, typer.Argument(help="general data of the same kind")],
    output: Annotated[Path, typer.Option("--out", "-o", help="folder for train.jsonl and validation.jsonl")],
    long_fraction: Annotated[float, typer.Option(help="share of long-writing chats in the blend")] = 0.5,
    val_fraction: Annotated[float, typer.Option(help="share of prompts held out for validation")] = 0.01,
    seed: Seed = 0,
) -> None:
    """Blend long-writing chats (or preference pairs) with general ones, shuffle, and split train/validation."""
    from lw_data.io import read_table, write_table
    from lw_data.mixing import mix as blend
    from lw_data.mixing import split

    blended = blend(
        read_table(_not_empty(long)), read_table(_not_empty(general)), long_fraction=long_fraction, seed=seed
    )
    train, validation = split(blended, val_fraction=val_fraction, seed=seed)
    write_table(train, output / "train.jsonl")
    write_table(validation, output / "validation.jsonl")
    counts = ", ".join(f"{s}: {c}" for s, c in blended.group_by("source").len().sort("source").iter_rows())
    console.print(f"{blended.height} rows ({counts}) → {train.height} train, {validation.height} validation")


@app.command()
@user_errors
def stats(
    input: Annotated[Path, typer.Argument(help="SFT chats (.jsonl/.parquet with messages)")],
    png: Annotated[Path | None, typer.Option(help="save the length plots here")] = None,
) -> None:
    """Counts and output lengths per language and type, as a table (and a PNG)."""
    from lw_data.io import read_table
    from lw_data.stats import measures

    _print_stats(measures(read_table(_not_empty(input))), png, f"{input.name}")


@app.command()
@user_errors
def export(
    input: Annotated[str, typer.Argument(help="a table file or folder, or THUDM/LongWriter-6k (from the HF hub)")],
    output: Annotated[Path, typer.Option("--out", "-o", help="file (.jsonl/.parquet) or folder (--format hf)")],
    format: Annotated[
        Literal["jsonl", "parquet", "hf"] | None,
        typer.Option(help="hf: datasets.save_to_disk [default: parquet for a .parquet output, else jsonl]"),
    ] = None,
) -> None:
    """Convert between JSONL, parquet and HF datasets; fetch LongWriter-6k."""
    from lw_data.io import LONGWRITER_6K, load_longwriter6k, read_table, to_dataset, write_table

    source = Path(input)
    hub = input == LONGWRITER_6K and not source.exists()
    frame = load_longwriter6k() if hub else read_table(_not_empty(source))
    kind = format or ("parquet" if output.suffix == ".parquet" else "jsonl")
    if kind == "hf":
        to_dataset(frame).save_to_disk(str(output))
    else:
        write_table(frame, output if output.suffix else output.with_suffix(f".{kind}"))
    console.print(f"{frame.height} rows → {output}")


def _not_empty(path: Path) -> Path:
    """``path``, unless it is a file with nothing but whitespace: then an error, rather than an empty result that
    replaces the output of an earlier run."""
    if path.is_file():
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 16):
                if chunk.strip():
                    return path
        raise DataError(f"{path}: empty file: no records to read")
    return path


def _count_lines(path: Path) -> int | None:
    try:
        with path.open("rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b""))
    except OSError:
        return None  # build_sft_file reports the missing file with its own message
