"""Reports people read: markdown tables, the JSON record, and the paper's length plot beside quality or Ruler.

Plots are drawn on a :class:`matplotlib.figure.Figure` with its own Agg canvas, so the caller's backend (a
notebook's inline plots, say) is never changed.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lw_core import DIMENSIONS, BenchReport, atomic_write

from lw_bench.scoring import coverage_line

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Dataset names whose report shows the output-length table (the LongWrite-Ruler table) by default.
RULER_DATASETS = ("longwrite_ruler",)


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def degenerate_line(report: BenchReport) -> str:
    """Share of outputs that loop (repeated-4-gram ratio above the threshold), to read beside S_l."""
    degenerate = report.meta.get("degenerate") or {}
    if degenerate.get("share") is None:
        return "Degenerate outputs: –"
    return (
        f"Degenerate outputs (repeated-4-gram ratio > {degenerate['threshold']}): {degenerate['count']} of "
        f"{report.overall.n} ({_pct(degenerate['share'])})"
    )


def comparison_table(reports: Mapping[str, BenchReport | None] | Sequence[BenchReport]) -> str:
    """One markdown table, a row per run: S_l, S_q, S overall, S_l per length range, and each dimension.

    Given a mapping, rows are labelled by its keys (a ``None`` report is a row saying it is missing); given a
    sequence, by each report's model name.

    >>> from lw_core import Prediction
    >>> from lw_bench.scoring import score_run
    >>> run = score_run([Prediction(id="a", prompt="Write 100 words", response="word " * 80, length=100)])
    >>> for row in comparison_table({"base": run, "sft": None}).splitlines()[2:]:  # model, judge, n, S_l, S_q, S
    ...     print("|".join(row.split("|")[:7]) + "|")
    | base | – | 1 | 87.5 | – | – |
    | sft | missing | – | – | – | – |
    """
    if isinstance(reports, Mapping):
        labelled = list(reports.items())
    else:
        labelled = [(r.model or f"run {i + 1}", r) for i, r in enumerate(reports)]
    present = [r for _, r in labelled if r is not None]
    ranges = [g.name for g in present[0].by_length] if present else []
    header = ["model", "judge", "n", "S_l", "S_q", "S", *(f"S_l {r}" for r in ranges), *DIMENSIONS, "judge failures"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, report in labelled:
        if report is None:
            cells = [label, "missing", *("–" for _ in header[2:])]
        else:
            o = report.overall
            by_range = {g.name: g.length_score for g in report.by_length}
            cells = [
                label,
                report.judge or "–",
                str(o.n),
                _f(o.length_score),
                _f(o.quality_score),
                _f(o.score),
                *(_f(by_range.get(r)) for r in ranges),
                *(_f(o.dimensions.get(d)) for d in DIMENSIONS),
                str(report.judge_failures),
            ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def length_table(report: BenchReport) -> str:
    """Output length (mean, median, max) and S_l per required length: the paper's LongWrite-Ruler table."""
    lines = [
        "| required | items | answered | mean | median | max | S_l |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report.meta.get("by_required", []):
        lines.append(
            f"| {row['required']} | {row['items']} | {row['n']} | {_f(row['mean'])} | {_f(row['median'])} | "
            f"{'–' if row['max'] is None else row['max']} | {_f(row['S_l'])} |"
        )
    return "\n".join(lines) + "\n"


def render_markdown(
    report: BenchReport, *, compare: Sequence[BenchReport] = (), show_length_table: bool | None = None
) -> str:
    """The report of one run (and, given other runs, a side-by-side table)."""
    o = report.overall
    meta = report.meta
    if show_length_table is None:
        show_length_table = report.dataset in RULER_DATASETS
    benchmark = "LongWrite-Ruler" if report.dataset in RULER_DATASETS else "LongBench-Write"
    out = [
        f"# {benchmark}: {report.model or 'model'}",
        "",
        f"Dataset: {report.dataset or '–'} · judge: {report.judge or '–'} · items: {o.n} · "
        f"judged: {o.n_judged} · judge failures: {report.judge_failures} · "
        f"truncated outputs: {meta.get('truncated', 0)} · judge replicates: {meta.get('replicates', 0)}",
        "",
        coverage_line(report),
        "",
        f"**S = {_f(o.score)}** (S_l = {_f(o.length_score)}, S_q = {_f(o.quality_score)})",
        "",
        degenerate_line(report),
        "",
        "## By required length",
        "",
        "| range | n | S_l | S_q | S |",
        "|---|---|---|---|---|",
        *(
            f"| {g.name} | {g.n} | {_f(g.length_score)} | {_f(g.quality_score)} | {_f(g.score)} |"
            for g in report.by_length
        ),
        "",
    ]
    if show_length_table:
        out += ["## Output length per required length", "", length_table(report)]
    out += [
        "## By type",
        "",
        "| type | n | S_l | S_q | S |",
        "|---|---|---|---|---|",
        *(
            f"| {_cell(g.name)} | {g.n} | {_f(g.length_score)} | {_f(g.quality_score)} | {_f(g.score)} |"
            for g in report.by_type
        ),
        "",
        "## Quality dimensions",
        "",
        "| dimension | score (0–100) | std over judge replicates |",
        "|---|---|---|",
        *(f"| {d} | {_f(o.dimensions.get(d))} | {_f(report.dimension_std.get(d))} |" for d in DIMENSIONS),
        "",
        f"Scores: S_l and each dimension's `(mean − 1)·25` as in the paper; S_q is their mean; S = (S_l + S_q)/2. "
        f"Tokens: {meta.get('prediction_tokens', 0)} generated, {meta.get('judge_tokens', 0)} for judging.",
        "",
    ]
    if compare:
        out += ["## Comparison", "", comparison_table([report, *compare])]
    return "\n".join(out)


def new_figure(width: float, height: float) -> Figure:
    """A figure with its own Agg canvas: nothing global (pyplot, the backend) is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def plot_lengths(axes: Axes, report: BenchReport, *, title: str | None = None, threshold: float | None = None) -> None:
    """Required vs output length on log-log axes with y = x: the paper's scatter (``eval_length.py``).

    Degenerate outputs (repeated-4-gram ratio above ``threshold``, default the report's own degenerate threshold)
    get their own marker, so a reader sees which lengths are loops.
    """
    points = [(x, y) for x, y in report.meta.get("points", [])]
    limit, floor = 25000.0, 50.0
    if points:
        if threshold is None:
            threshold = (report.meta.get("degenerate") or {}).get("threshold")
        ratios = report.meta.get("repetition") or []
        looping = [threshold is not None and i < len(ratios) and ratios[i] > threshold for i in range(len(points))]
        for degenerate, marker, color, alpha in ((False, "o", "tab:red", 0.35), (True, "x", "tab:purple", 0.8)):
            chosen = [(x, max(y, 1)) for (x, y), d in zip(points, looping, strict=True) if d == degenerate]
            if chosen:  # an empty answer sits on the floor of the log axis
                label = f"degenerate (repeated 4-grams > {threshold:g})" if degenerate else "items"
                axes.scatter([x for x, _ in chosen], [y for _, y in chosen], s=60, marker=marker, c=color,
                             alpha=alpha, label=label)  # fmt: skip
        xs = [x for x, _ in points]
        ys = [max(y, 1) for _, y in points]
        limit = max(limit, *xs, *ys)
        floor = min(floor, min(ys) / 1.5)
    axes.plot([1, limit], [1, limit], "k--", label="y = x")
    axes.set(xscale="log", yscale="log", xlim=(50, limit), ylim=(floor, limit))
    axes.set_xlabel("required length")
    axes.set_ylabel("output length")
    axes.set_title(title or f"S_l = {_f(report.overall.length_score)}")
    axes.legend(loc="upper left")


def plot_ruler(axes: Axes, reports: Mapping[str, BenchReport]) -> None:
    """Output length (mean, with median and max) per required length, one line per run, and y = x."""
    low, top = float("inf"), 1.0
    for index, (label, report) in enumerate(reports.items()):
        rows = [r for r in report.meta.get("by_required", []) if r["n"]]
        if not rows:
            continue
        color = f"C{index}"
        xs = [r["required"] for r in rows]
        axes.plot(xs, [max(r["mean"], 1) for r in rows], "o-", color=color, label=f"{label}: mean")
        axes.plot(xs, [max(r["median"], 1) for r in rows], "s--", color=color, alpha=0.6, label=f"{label}: median")
        axes.plot(xs, [max(r["max"], 1) for r in rows], "^:", color=color, alpha=0.6, label=f"{label}: max")
        low = min(low, *xs, *(max(min(r["mean"], r["median"]), 1) for r in rows))
        top = max(top, *xs, *(r["max"] for r in rows))
    low = 1.0 if low == float("inf") else low / 1.5
    axes.plot([low, top * 1.2], [low, top * 1.2], "k--", linewidth=1, label="y = x")
    axes.set(xscale="log", yscale="log")
    axes.set_xlabel("required length")
    axes.set_ylabel("output length")
    axes.set_title("output length per required length")
    axes.legend(loc="upper left", fontsize="small")


def _plot_dimensions(axes: Axes, report: BenchReport) -> None:
    dims = report.overall.dimensions
    values = [dims.get(d, 0.0) for d in DIMENSIONS]
    errors = [report.dimension_std.get(d, 0.0) for d in DIMENSIONS]
    axes.bar(range(len(DIMENSIONS)), values, yerr=errors if any(errors) else None, color="tab:blue", capsize=4)
    axes.set_xticks(range(len(DIMENSIONS)), [d.replace(" and ", "\nand ").replace(" ", "\n", 1) for d in DIMENSIONS])
    axes.set_ylim(0, 100)
    axes.set_ylabel(
        "score (0–100)" + (f"; bars: ± std over {report.meta.get('replicates')} judge runs" if any(errors) else "")
    )
    axes.set_title(f"S_q = {_f(report.overall.quality_score)}")


def render_png(report: BenchReport) -> bytes:
    """The paper's length scatter, beside the dimension bars (judged runs) or the output-length curve (Ruler)."""
    figure = new_figure(12, 5.5)
    scatter, right = figure.subplots(1, 2)
    plot_lengths(scatter, report)
    if report.overall.dimensions:
        _plot_dimensions(right, report)
    else:
        plot_ruler(right, {report.model or "model": report})
    figure.suptitle(report.model or "LongBench-Write")
    return png_bytes(figure)


def write_report(
    report: BenchReport,
    out_dir: str | os.PathLike[str],
    *,
    compare: Sequence[BenchReport] = (),
    name: str = "report",
    show_length_table: bool | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and ``report.png`` atomically; returns their paths by suffix.

    The output-length table (LongWrite-Ruler's) is in the markdown for Ruler runs, or when ``show_length_table``.
    """
    folder = Path(out_dir)
    paths = {suffix: folder / f"{name}.{suffix}" for suffix in ("md", "json", "png")}
    atomic_write(paths["json"], report.model_dump_json(indent=2))
    atomic_write(paths["md"], render_markdown(report, compare=compare, show_length_table=show_length_table))
    atomic_write(paths["png"], render_png(report))
    return paths
