"""The paper's scores: S_l from lengths, S_q from judge ratings, S = (S_l + S_q) / 2, overall and per slice.

The per-output rules are lw-core's (:func:`lw_core.length_score`, :func:`lw_core.quality_score`), which reproduce
THUDM/LongWriter's ``eval_length.py`` and ``eval_quality.py`` operation for operation, and so is the vectorised length
score (:func:`lw_core.length_scores_array`, bit-identical); this module wraps it for polars and adds the aggregation
of a run: slices, coverage, output length per required length, and the share of degenerate (looping) outputs.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl
from lw_core import (
    DIMENSIONS,
    REPETITION_THRESHOLD,
    BenchItem,
    BenchReport,
    Judgment,
    Prediction,
    ScoreGroup,
    count_words_batch,
    length_scores_array,
    quality_score,
    repeated_ngram_ratio,
)

log = logging.getLogger(__name__)

#: Required-length ranges, [low, high) in words (characters for Chinese): the paper's four, the last one open-ended
#: (``None``) so the 20000-word LongBench-Write item and the 20000/30000 LongWrite-Ruler items are scored too.
LENGTH_RANGES: tuple[tuple[int, int | None], ...] = ((0, 500), (500, 2000), (2000, 4000), (4000, None))


def length_score_expr(required: str | pl.Expr = "length", actual: str | pl.Expr = "word_count") -> pl.Expr:
    """:func:`lw_core.length_score` as a polars expression over two columns, bit-identical to the scalar form.

    Evaluated with numpy (:func:`lw_core.length_scores_array`): polars' own kernels turn ``a / 3`` into
    ``a * (1/3)``, which differs in the last bits, and the point of this package is numbers equal to the paper's.
    Lengths the scalar refuses (a required length of 0 or less, a negative output length) raise :class:`ValueError`
    when the expression is evaluated.
    """
    x = (pl.col(required) if isinstance(required, str) else required).cast(pl.Float64)
    y = (pl.col(actual) if isinstance(actual, str) else actual).cast(pl.Float64)
    return (
        pl.struct(x.alias("x"), y.alias("y"))
        .map_batches(
            lambda s: pl.Series(length_scores_array(s.struct.field("x").to_numpy(), s.struct.field("y").to_numpy())),
            return_dtype=pl.Float64,
        )
        .alias("length_score")
    )


def length_scores(required: Sequence[float] | pl.Series, actual: Sequence[float] | pl.Series) -> pl.Series:
    """:func:`lw_core.length_score` for many rows at once (a million rows in well under a second).

    Lengths the scalar refuses raise :class:`ValueError` here too.
    """
    frame = pl.DataFrame({"x": required, "y": actual}, schema={"x": pl.Float64, "y": pl.Float64})
    return pl.Series("length_score", length_scores_array(frame["x"].to_numpy(), frame["y"].to_numpy()))


def latest_judgments(judgments: Iterable[Judgment]) -> dict[tuple[str, int, int], Judgment]:
    """One judgment per (id, sample, replicate): the last complete one, else the last failure.

    Judgment files are append-only, so a resumed run that retries a failure adds a later line.
    """
    latest: dict[tuple[str, int, int], Judgment] = {}
    for judgment in judgments:
        key = (judgment.id, judgment.sample, judgment.replicate)
        if judgment.status == "ok" or key not in latest or latest[key].status != "ok":
            latest[key] = judgment
    return latest


def _dimension_scores(judged: list[Judgment]) -> dict[str, float]:
    """Per dimension ``(mean − 1)·25`` over judgments, in the paper's order of operations (not a mean of means)."""
    if not judged:
        return {}
    return {dim: (statistics.fmean(j.scores[dim] for j in judged) - 1) * 25 for dim in DIMENSIONS}


def _group(name: str, rows: list[tuple[Prediction, float]], judged: list[Judgment]) -> ScoreGroup:
    s_l = statistics.fmean(score for _, score in rows) if rows else None
    dims = _dimension_scores(judged)
    s_q = statistics.fmean(dims.values()) if dims else None
    total = (s_l + s_q) / 2 if s_l is not None and s_q is not None else None
    return ScoreGroup(
        name=name, n=len(rows), n_judged=len(judged), length_score=s_l, quality_score=s_q, score=total, dimensions=dims
    )


def range_name(low: int, high: int | None) -> str:
    """``[500, 2000)``, or ``[4000, ∞)`` for the open-ended last range.

    >>> [range_name(low, high) for low, high in LENGTH_RANGES]
    ['[0, 500)', '[500, 2000)', '[2000, 4000)', '[4000, ∞)']
    """
    return f"[{low}, {'∞' if high is None else high})"


def in_range(length: int, low: int, high: int | None) -> bool:
    return low <= length and (high is None or length < high)


def _by_required(rows: list[tuple[Prediction, float]], items: dict[str, BenchItem]) -> list[dict[str, Any]]:
    """Output length (mean, median, max) and S_l per required length: the LongWrite-Ruler table."""
    lengths = sorted({p.length for p, _ in rows} | {i.length for i in items.values()})
    table = []
    for required in lengths:
        selected = [(p, s) for p, s in rows if p.length == required]
        words = [p.word_count for p, _ in selected]
        table.append(
            {
                "required": required,
                "items": sum(i.length == required for i in items.values()) or len({p.id for p, _ in selected}),
                "n": len(selected),
                "mean": statistics.fmean(words) if words else None,
                "median": statistics.median(words) if words else None,
                "max": max(words) if words else None,
                "S_l": statistics.fmean(s for _, s in selected) if selected else None,
            }
        )
    return table


def _coverage(rows: list[tuple[Prediction, float]], items: dict[str, BenchItem] | None, ignored: int) -> dict[str, Any]:
    """Items with a prediction / items in the set, overall and per range; ``None`` shares when the set is unknown."""
    scored = {p.id for p, _ in rows}
    if items is None:
        return {"items": None, "scored": len(scored), "share": None, "missing": [], "ignored": ignored}
    per_range = {}
    for low, high in LENGTH_RANGES:
        in_set = [i for i in items.values() if in_range(i.length, low, high)]
        per_range[range_name(low, high)] = [sum(i.id in scored for i in in_set), len(in_set)]
    return {
        "items": len(items),
        "scored": len(scored),
        "share": len(scored) / len(items) if items else 1.0,
        "missing": sorted(set(items) - scored),
        "ignored": ignored,
        "by_length": per_range,
    }


def coverage_line(report: BenchReport) -> str:
    """One sentence on how much of the set a report's scores cover, loud when it is not all of it."""
    coverage = report.meta.get("coverage") or {}
    if coverage.get("items") is None:
        n = report.overall.n
        return f"Coverage: {n} predictions scored; the item set was not given, so missing items are unknown."
    scored, total = coverage["scored"], coverage["items"]
    line = f"Coverage: {scored} of {total} items scored ({100 * coverage['share']:.1f} %)"
    if scored < total:
        missing = coverage["missing"]
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        return (
            f"WARNING — {line}: S_l and S_q are over the scored items only (as the paper averages over its prediction "
            f"file); {total - scored} missing ({shown}). Run the predict stage again to fill them."
        )
    return line + "."


def score_run(
    predictions: Iterable[Prediction],
    judgments: Iterable[Judgment] = (),
    *,
    items: Iterable[BenchItem] | None = None,
    model: str | None = None,
    judge: str | None = None,
    dataset: str | None = None,
    repetition_threshold: float = REPETITION_THRESHOLD,
) -> BenchReport:
    """A :class:`BenchReport` from predictions and (optionally) judgments.

    Output lengths are recounted from the response text with the paper's measure, so a file from
    another tool with its own ``word_count`` is scored the same way. Judgments are matched on
    (id, sample); failed or incomplete ones are left out of S_q and counted in ``judge_failures``. With k judge
    replicates, ``dimension_std`` is the std (n−1) over replicates of each dimension's score and of S_q.

    With ``items`` (the set the run was meant to cover), predictions of other items are ignored and
    ``meta["coverage"]`` says how many items were scored: like the paper, S_l averages over the predictions that
    exist, so a run with failed predictions is flagged (logged and stated in the report), never silently shrunk.
    ``meta["by_required"]`` is output length per required length (the LongWrite-Ruler table) and
    ``meta["degenerate"]`` the share of outputs whose repeated-4-gram ratio exceeds ``repetition_threshold``.

    >>> from lw_core import BenchItem
    >>> items = [BenchItem(prompt="Write 100 words", length=100), BenchItem(prompt="Write 5000 words", length=5000)]
    >>> answer = Prediction(id=items[0].id, prompt=items[0].prompt, response="word " * 50, length=100)
    >>> report = score_run([answer], items=items)  # the 5000-word item failed: 1 of 2 scored, and a warning
    >>> report.overall.length_score, report.meta["coverage"]["share"], report.meta["by_required"][0]["mean"]
    (50.0, 0.5, 50.0)
    """
    wanted = {item.id: item for item in items} if items is not None else None
    preds = list(predictions)
    ignored = 0
    if wanted is not None:
        kept = [p for p in preds if p.id in wanted]
        ignored, preds = len(preds) - len(kept), kept
    counts = count_words_batch([p.response for p in preds])
    scores = length_scores([p.length for p in preds], counts).to_list() if preds else []
    rows = [(p.model_copy(update={"word_count": c}), s) for p, c, s in zip(preds, counts, scores, strict=True)]
    keys = {(p.id, p.sample) for p in preds}
    latest = {k: j for k, j in latest_judgments(judgments).items() if (k[0], k[1]) in keys}
    ok = [j for j in latest.values() if j.status == "ok" and quality_score(j.scores) is not None]
    by_key: dict[tuple[str, int], list[Judgment]] = {}
    for j in ok:
        by_key.setdefault((j.id, j.sample), []).append(j)

    def judged_for(selected: list[tuple[Prediction, float]]) -> list[Judgment]:
        return [j for p, _ in selected for j in by_key.get((p.id, p.sample), [])]

    by_length = []
    for low, high in LENGTH_RANGES:
        selected = [r for r in rows if in_range(r[0].length, low, high)]
        by_length.append(_group(range_name(low, high), selected, judged_for(selected)))
    by_type = []
    for kind in sorted({p.type or "unknown" for p, _ in rows}):
        selected = [r for r in rows if (r[0].type or "unknown") == kind]
        by_type.append(_group(kind, selected, judged_for(selected)))

    replicates = sorted({j.replicate for j in ok})
    dimension_std: dict[str, float] = {}
    if len(replicates) >= 2:
        per_replicate = [_dimension_scores([j for j in ok if j.replicate == r]) for r in replicates]
        for dim in DIMENSIONS:
            dimension_std[dim] = statistics.stdev(s[dim] for s in per_replicate)
        dimension_std["S_q"] = statistics.stdev(statistics.fmean(s.values()) for s in per_replicate)

    repetition = [repeated_ngram_ratio(p.response) for p, _ in rows]
    degenerate = sum(r > repetition_threshold for r in repetition)
    meta: dict[str, Any] = {
        "points": [[p.length, p.word_count] for p, _ in rows],
        "length_scores": [[p.id, p.sample, s] for p, s in rows],  # per output: runs are compared item by item
        "repetition": repetition,
        "degenerate": {
            "threshold": repetition_threshold,
            "count": degenerate,
            "share": degenerate / len(rows) if rows else None,
        },
        "coverage": _coverage(rows, wanted, ignored),
        "by_required": _by_required(rows, wanted or {}),
        "replicates": len(replicates),
        "truncated": sum(p.finish_reason == "length" for p, _ in rows),
        "samples": len({p.sample for p, _ in rows}),
        "prediction_tokens": sum(p.usage.completion_tokens for p, _ in rows),
        "judge_tokens": sum(j.usage.prompt_tokens + j.usage.completion_tokens for j in latest.values()),
    }
    report = BenchReport(
        model=model or next((p.model for p, _ in rows if p.model), None),
        judge=judge or next((j.judge for j in ok if j.judge), None),
        dataset=dataset,
        overall=_group("overall", rows, judged_for(rows)),
        by_length=by_length,
        by_type=by_type,
        judge_failures=len(latest) - len(ok),
        dimension_std=dimension_std,
        meta=meta,
    )
    coverage = meta["coverage"]
    if coverage["items"] is not None and coverage["scored"] < coverage["items"]:
        log.warning("%s", coverage_line(report))
    return report
