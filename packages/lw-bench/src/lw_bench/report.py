"""Reports people read: markdown tables, the JSON record, and the paper's length plot plus dimension bars."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from lw_core import DIMENSIONS, BenchReport, atomic_write


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _label(report: BenchReport, index: int) -> str:
    return report.model or f"run {index + 1}"


def comparison_table(reports: Sequence[BenchReport]) -> str:
    """One markdown table, a row per run: S_l, S_q, S overall, S_l per length range, and each dimension."""
    ranges = [g.name for g in reports[0].by_length] if reports else []
    header = ["model", "judge", "n", "S_l", "S_q", "S", *(f"S_l {r}" for r in ranges), *DIMENSIONS, "judge failures"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, report in enumerate(reports):
        o = report.overall
        by_range = {g.name: g.length_score for g in report.by_length}
        cells = [
            _label(report, index),
            report.judge or "–",
            str(o.n),
            _f(o.length_score),
            _f(o.quality_score),
            _f(o.score),
            *(_f(by_range.get(r)) for r in ranges),
            *(_f(o.dimensions.get(d)) for d in DIMENSIONS),
            str(report.judge_failures),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_markdown(report: BenchReport, *, compare: Sequence[BenchReport] = ()) -> str:
    """The report of one run (and, given other runs, a side-by-side table)."""
    o = report.overall
    meta = report.meta
    out = [
        f"# LongBench-Write: {report.model or 'model'}",
        "",
        f"Dataset: {report.dataset or '–'} · judge: {report.judge or '–'} · items: {o.n} · "
        f"judged: {o.n_judged} · judge failures: {report.judge_failures} · "
        f"truncated outputs: {meta.get('truncated', 0)} · judge replicates: {meta.get('replicates', 0)}",
        "",
        f"**S = {_f(o.score)}** (S_l = {_f(o.length_score)}, S_q = {_f(o.quality_score)})",
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
        "## By type",
        "",
        "| type | n | S_l | S_q | S |",
        "|---|---|---|---|---|",
        *(
            f"| {g.name} | {g.n} | {_f(g.length_score)} | {_f(g.quality_score)} | {_f(g.score)} |"
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


def render_png(report: BenchReport) -> bytes:
    """Required vs output length on log-log axes with y = x (the paper's plot), and a bar per dimension."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 5.5), layout="constrained")
    scatter, bars = figure.subplots(1, 2)
    points = [(x, y) for x, y in report.meta.get("points", [])]
    limit, floor = 25000, 50.0
    if points:
        xs = [x for x, _ in points]
        ys = [max(y, 1) for _, y in points]  # an empty answer sits on the floor of the log axis
        scatter.scatter(xs, ys, s=60, c="tab:red", alpha=0.35, label="items")
        limit = max(limit, *xs, *ys)
        floor = min(floor, min(ys) / 1.5)
    scatter.plot([1, limit], [1, limit], "k--", label="y = x")
    scatter.set(xscale="log", yscale="log", xlim=(50, limit), ylim=(floor, limit))
    scatter.set_xlabel("required length")
    scatter.set_ylabel("output length")
    scatter.set_title(f"S_l = {_f(report.overall.length_score)}")
    scatter.legend(loc="upper left")
    dims = report.overall.dimensions
    values = [dims.get(d, 0.0) for d in DIMENSIONS]
    errors = [report.dimension_std.get(d, 0.0) for d in DIMENSIONS]
    bars.bar(range(len(DIMENSIONS)), values, yerr=errors if any(errors) else None, color="tab:blue", capsize=4)
    bars.set_xticks(range(len(DIMENSIONS)), [d.replace(" and ", "\nand ").replace(" ", "\n", 1) for d in DIMENSIONS])
    bars.set_ylim(0, 100)
    bars.set_ylabel(
        "score (0–100)" + (f"; bars: ± std over {report.meta.get('replicates')} judge runs" if any(errors) else "")
    )
    bars.set_title(f"S_q = {_f(report.overall.quality_score)}" if dims else "not judged")
    figure.suptitle(report.model or "LongBench-Write")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def write_report(
    report: BenchReport,
    out_dir: str | os.PathLike[str],
    *,
    compare: Sequence[BenchReport] = (),
    name: str = "report",
) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and ``report.png`` atomically; returns their paths by suffix."""
    folder = Path(out_dir)
    paths = {suffix: folder / f"{name}.{suffix}" for suffix in ("md", "json", "png")}
    atomic_write(paths["json"], report.model_dump_json(indent=2))
    atomic_write(paths["md"], render_markdown(report, compare=compare))
    atomic_write(paths["png"], render_png(report))
    return paths
