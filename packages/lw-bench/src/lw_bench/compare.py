"""The comparison report: base vs SFT vs DPO (and any other labelled run) as the paper sets them side by side.

Runs are passed as ``{label: report}``, so a run that is missing (``None``) is a row that says so and can never
lend its label to another. Beside S_l stand the share of degenerate outputs (repeated-4-gram ratio above
lw-data's filter threshold), the outputs that ran to their token cap and the median of words ÷ required: a length
bought with loops, or a model that does not stop, shows up there. Below the table, each run's S_l is set against
the first run's item by item, with a bootstrap interval: on 40 items a difference of 8 points can be noise.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lw_core import REPETITION_THRESHOLD, BenchReport, atomic_write

from lw_bench.errors import BenchError
from lw_bench.report import _cell, _f, _pct, new_figure, plot_lengths, plot_ruler, png_bytes
from lw_bench.scoring import coverage_line

#: Said under the table when the judge is a small model (the app passes ``small_judge=True``).
SMALL_JUDGE_CAVEAT = (
    "The judge is a small model: its S_q and S are not a measure of writing quality; read S_l and the degenerate "
    "share, and judge with a strong model (GPT-4o class, as in the paper) before setting S_q beside the paper's."
)


def degenerate_share(report: BenchReport, threshold: float = REPETITION_THRESHOLD) -> float | None:
    """Share of a run's outputs whose repeated-4-gram ratio is above ``threshold`` (None without outputs)."""
    ratios = report.meta.get("repetition")
    if ratios is None:
        raise BenchError(f"report of {report.model or 'a run'} has no repetition ratios; score it again with lw-bench")
    return sum(r > threshold for r in ratios) / len(ratios) if ratios else None


def at_cap(report: BenchReport) -> int:
    """Outputs that ended at their token cap (``finish_reason == "length"``): a model that does not stop."""
    return int(report.meta.get("truncated", 0))


def length_ratio(report: BenchReport) -> float | None:
    """Median of words ÷ required over a run's outputs (None without outputs): 1 is on length, above 1 too long.

    >>> from lw_core import Prediction
    >>> from lw_bench.scoring import score_run
    >>> run = score_run([Prediction(id=k, prompt="p", response="word " * n, length=100) for k, n in (("a", 50),
    ...                  ("b", 80), ("c", 300))])
    >>> length_ratio(run)
    0.8
    """
    points = report.meta.get("points") or []
    return statistics.median(y / x for x, y in points) if points else None


@dataclass(frozen=True)
class PairedDifference:
    """S_l of a run minus a baseline's over the outputs both have (same item and sample), as a mean with a
    percentile-bootstrap interval, and how many outputs scored higher, lower or the same."""

    n: int
    mean: float
    low: float
    high: float
    better: int
    worse: int
    same: int


def paired_length_difference(
    run: BenchReport, baseline: BenchReport, *, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> PairedDifference | None:
    """``run``'s S_l minus ``baseline``'s, paired by item: the outputs are resampled (with replacement) ``resamples``
    times and the interval is the middle ``confidence`` of the resampled means. Pairing removes the spread between
    items (a 2,000-word request is hard for both models), so it says more than two overall S_l with their own noise.

    None when the runs share no scored output or a report predates per-output scores (score it again).

    >>> from lw_core import Prediction
    >>> from lw_bench.scoring import score_run
    >>> def run(words):  # four items of 100 words
    ...     return score_run([Prediction(id=str(i), prompt="p", response="word " * n, length=100)
    ...                       for i, n in enumerate(words)])
    >>> d = paired_length_difference(run([100, 100, 90, 50]), run([50, 50, 90, 50]))
    >>> d.n, d.mean, (d.better, d.worse, d.same)
    (4, 25.0, (2, 0, 2))
    >>> d.low >= 0 and d.high <= 50
    True
    """
    if not 0 < confidence < 1:
        raise BenchError(f"confidence must be between 0 and 1, got {confidence}")
    ours, theirs = run.meta.get("length_scores"), baseline.meta.get("length_scores")
    if ours is None or theirs is None:
        return None
    base = {(item, sample): score for item, sample, score in theirs}
    diffs = [score - base[(item, sample)] for item, sample, score in ours if (item, sample) in base]
    if not diffs:
        return None
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(resamples))
    tail = (1 - confidence) / 2
    return PairedDifference(
        n=len(diffs),
        mean=statistics.fmean(diffs),
        low=means[int(tail * resamples)],
        high=means[min(resamples - 1, int((1 - tail) * resamples))],
        better=sum(d > 0 for d in diffs),
        worse=sum(d < 0 for d in diffs),
        same=sum(d == 0 for d in diffs),
    )


def _paired(runs: Mapping[str, BenchReport]) -> tuple[str, dict[str, PairedDifference | None]] | None:
    """The first run's label and every other run's paired S_l difference against it (None with one run)."""
    if len(runs) < 2:
        return None
    baseline, *others = runs
    return baseline, {label: paired_length_difference(runs[label], runs[baseline]) for label in others}


def _paired_table(baseline: str, differences: Mapping[str, PairedDifference | None]) -> str:
    header = ["model", "outputs", f"S_l − {baseline}", "95 % interval", "better / worse / same"]
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|---|---:|---:|---:|---:|"]
    for label, d in differences.items():
        if d is None:
            cells = [label, "–", "no per-output scores in one of the reports: score it again with lw-bench", "", ""]
        else:
            interval, counts = f"{d.low:+.1f} … {d.high:+.1f}", f"{d.better} / {d.worse} / {d.same}"
            cells = [label, str(d.n), f"{d.mean:+.1f}", interval, counts]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _coverage_cell(report: BenchReport) -> str:
    coverage = report.meta.get("coverage") or {}
    if coverage.get("items") is None:
        return f"{report.overall.n} / ?"
    return f"{coverage['scored']} / {coverage['items']}"


def paper_table(runs: Mapping[str, BenchReport | None], *, threshold: float = REPETITION_THRESHOLD) -> str:
    """The paper's LongBench-Write table (S, S_l, S_q overall and S_l, S_q per length range), a row per label.

    >>> from lw_core import Prediction
    >>> from lw_bench.scoring import score_run
    >>> loop = "word " * 100  # the right length, but one word over and over: degenerate
    >>> sft = score_run([Prediction(id="a", prompt="Write 100 words", response=loop, length=100)])
    >>> for row in paper_table({"base": None, "sft": sft}).splitlines()[2:]:  # model, items, S, S_l, S_q, degenerate
    ...     print("|".join(row.split("|")[:7]) + "|")
    | base | missing | – | – | – | – |
    | sft | 1 / ? | – | 100.0 | – | 100.0 % |
    """
    present = [r for r in runs.values() if r is not None]
    ranges = [g.name for g in present[0].by_length] if present else []
    header = [
        "model", "items", "S", "S_l", "S_q", "degenerate", "at cap", "words ÷ required",
        *(f"{r} {s}" for r in ranges for s in ("S_l", "S_q")),
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, report in runs.items():
        if report is None:
            cells = [label, "missing", *("–" for _ in header[2:])]
        else:
            o = report.overall
            groups = {g.name: g for g in report.by_length}
            per_range = []
            for name in ranges:
                group = groups.get(name)
                per_range += [_f(group.length_score), _f(group.quality_score)] if group else ["–", "–"]
            cells = [
                label,
                _coverage_cell(report),
                _f(o.score),
                _f(o.length_score),
                _f(o.quality_score),
                _pct(degenerate_share(report, threshold)),
                str(at_cap(report)),
                "–" if (ratio := length_ratio(report)) is None else f"{ratio:.2f}",
                *per_range,
            ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _ruler_table(ruler: Mapping[str, BenchReport]) -> str:
    lengths = sorted({row["required"] for r in ruler.values() for row in r.meta.get("by_required", [])})
    header = ["required", *(f"{label} {stat}" for label in ruler for stat in ("mean", "median", "max"))]
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for required in lengths:
        cells = [str(required)]
        for report in ruler.values():
            row = next((r for r in report.meta.get("by_required", []) if r["required"] == required), None)
            if row is None or not row["n"]:
                cells += ["–", "–", "–"]
            else:
                cells += [_f(row["mean"]), _f(row["median"]), str(row["max"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_comparison(
    runs: Mapping[str, BenchReport | None],
    *,
    ruler: Mapping[str, BenchReport | None] | None = None,
    small_judge: bool = False,
    threshold: float = REPETITION_THRESHOLD,
    title: str = "LongBench-Write",
) -> str:
    """The comparison as markdown: the paper's table, caveats, coverage per run, and the Ruler table."""
    out = [f"# {title}: {' vs '.join(runs)}", "", paper_table(runs, threshold=threshold)]
    source = " (lw-data's filter threshold)" if threshold == REPETITION_THRESHOLD else ""
    out.append(
        f"S = (S_l + S_q)/2 as in the paper; items: scored / in the set; degenerate: share of outputs whose "
        f"repeated-4-gram ratio is above {threshold}{source}. At cap: outputs that ran to their token cap; "
        "words ÷ required: the median over the outputs."
    )
    judges = sorted({r.judge for r in runs.values() if r is not None and r.judge})
    if judges:
        out.append(f"Judge: {', '.join(judges)}.")
    if small_judge:
        out.append(f"**Caveat:** {SMALL_JUDGE_CAVEAT}")
    out.append("")
    for label, report in runs.items():
        line = "not run or not found" if report is None else coverage_line(report)
        out.append(f"- {label}: {line}")
    paired = _paired({label: r for label, r in runs.items() if r is not None})
    if paired is not None:
        baseline, differences = paired
        out += [
            "",
            f"## S_l against {baseline}, item by item",
            "",
            _paired_table(baseline, differences),
            "Over the outputs both runs have (same item and sample): the mean difference, a 95 % percentile-bootstrap "
            "interval of it (10,000 resamples), and the outputs that scored higher, lower or the same. An interval "
            "that holds 0 is a difference these items cannot tell from noise.",
        ]
    ran_ruler = {k: v for k, v in (ruler or {}).items() if v is not None}
    if ran_ruler:
        out += ["", "## LongWrite-Ruler: output length per required length", "", _ruler_table(ran_ruler)]
    return "\n".join(out) + "\n"


def _scatter_png(runs: Mapping[str, BenchReport], threshold: float) -> bytes:
    """A panel per run (three to a row), degenerate outputs drawn with their own marker."""
    columns = min(3, len(runs))
    rows = math.ceil(len(runs) / columns)
    figure = new_figure(5.5 * columns, 5.5 * rows)
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    for ax, (label, report) in zip(axes, runs.items(), strict=False):
        plot_lengths(ax, report, title=f"{label}: S_l = {_f(report.overall.length_score)}", threshold=threshold)
    for ax in axes[len(runs) :]:
        ax.set_axis_off()
    return png_bytes(figure)


def _ruler_png(ruler: Mapping[str, BenchReport]) -> bytes:
    figure = new_figure(7, 5.5)
    plot_ruler(figure.subplots(), ruler)
    figure.suptitle("LongWrite-Ruler")
    return png_bytes(figure)


def _summary(report: BenchReport, threshold: float) -> dict[str, Any]:
    coverage = report.meta.get("coverage") or {}
    return {
        "model": report.model,
        "judge": report.judge,
        "dataset": report.dataset,
        "n": report.overall.n,
        "items": coverage.get("items"),
        "coverage": coverage.get("share"),
        "S": report.overall.score,
        "S_l": report.overall.length_score,
        "S_q": report.overall.quality_score,
        "degenerate_share": degenerate_share(report, threshold),
        "at_cap": at_cap(report),
        "words_per_required": length_ratio(report),
        "by_length": {g.name: {"n": g.n, "S_l": g.length_score, "S_q": g.quality_score} for g in report.by_length},
    }


def compare_runs(
    runs: Mapping[str, BenchReport | None],
    out_dir: str | os.PathLike[str],
    *,
    ruler: Mapping[str, BenchReport | None] | None = None,
    small_judge: bool = False,
    threshold: float = REPETITION_THRESHOLD,
    name: str = "comparison",
) -> dict[str, Path]:
    """Write the comparison of labelled runs (e.g. ``{"base": r0, "sft": r1, "dpo": r2}``) to ``out_dir``.

    Files, each written atomically: ``comparison.md`` (the paper-style table with the degenerate share, outputs at
    the cap and words ÷ required, a caveat when ``small_judge``, coverage per run, each run's S_l against the first
    run's item by item (:func:`paired_length_difference`), the Ruler table), ``comparison.json`` (the same
    figures), ``comparison.png`` (required vs produced length per run, log-log, with y = x, degenerate outputs
    marked) and, when ``ruler`` holds LongWrite-Ruler reports, ``ruler.png`` (output length per required length).
    Returns the paths by key.
    """
    if not runs:
        raise BenchError("nothing to compare: give at least one labelled run")
    present = {label: r for label, r in runs.items() if r is not None}
    ran_ruler = {label: r for label, r in (ruler or {}).items() if r is not None}
    folder = Path(out_dir)
    paths = {"md": folder / f"{name}.md", "json": folder / f"{name}.json"}
    document = {
        "labels": list(runs),
        "small_judge": small_judge,
        "repetition_threshold": threshold,
        "runs": {label: None if r is None else _summary(r, threshold) for label, r in runs.items()},
        "ruler": {label: r.meta.get("by_required", []) for label, r in ran_ruler.items()},
    }
    if (paired := _paired(present)) is not None:
        baseline, differences = paired
        document["paired_length"] = {
            "baseline": baseline,
            "runs": {label: None if d is None else asdict(d) for label, d in differences.items()},
        }
    atomic_write(paths["json"], json.dumps(document, indent=2, ensure_ascii=False))
    atomic_write(paths["md"], render_comparison(runs, ruler=ruler, small_judge=small_judge, threshold=threshold))
    if present:
        paths["png"] = folder / f"{name}.png"
        atomic_write(paths["png"], _scatter_png(present, threshold))
    if ran_ruler:
        paths["ruler_png"] = folder / "ruler.png"
        atomic_write(paths["ruler_png"], _ruler_png(ran_ruler))
    return paths
