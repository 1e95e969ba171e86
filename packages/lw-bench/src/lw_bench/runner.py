"""Resumable stages: predictions and judgments appended one line per finished call.

A stage reads what its output file already holds and only does the rest, so a run killed at any
point resumes where it stopped and never redoes or loses finished work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lw_core import BenchItem, ChatClient, ClientError, JsonlWriter, Judgment, Prediction, Usage, read_jsonl

from lw_bench.judge import judge_prediction, load_template
from lw_bench.scoring import latest_judgments

log = logging.getLogger(__name__)


@dataclass
class StageResult:
    """What one run of a stage did: new records, records found from earlier runs, failures, tokens."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    usage: Usage = field(default_factory=Usage)
    errors: list[str] = field(default_factory=list)


def _existing(path: Path, schema: type) -> list:
    return list(read_jsonl(path, schema, on_invalid="skip")) if path.exists() else []


async def predict(
    client: ChatClient,
    items: Iterable[BenchItem],
    out: str | os.PathLike[str],
    *,
    samples: int = 1,
    max_tokens: int = 32768,
    temperature: float = 0.5,
    top_p: float | None = None,
    concurrency: int = 4,
    on_record: Callable[[Prediction | None], None] | None = None,
) -> StageResult:
    """Answer each item ``samples`` times with the model under test, appending :class:`Prediction` lines to ``out``.

    Defaults follow the paper (32k new tokens, temperature 0.5). A failed call is reported and left
    for the next run; it never stops the others. ``on_record`` is called after every item (for progress).
    """
    out = Path(out)
    done = {(p.id, p.sample) for p in _existing(out, Prediction)}
    todo = [(item, s) for item in items for s in range(samples) if (item.id, s) not in done]
    result = StageResult(skipped=len(done))
    semaphore = asyncio.Semaphore(concurrency)
    with JsonlWriter(out) as writer:

        async def one(item: BenchItem, sample: int) -> None:
            async with semaphore:
                started = time.perf_counter()
                try:
                    completion = await client.complete(
                        [{"role": "user", "content": item.prompt}],
                        max_tokens=max_tokens,
                        temperature=temperature,
                        top_p=top_p,
                    )
                except ClientError as exc:
                    result.failed += 1
                    result.errors.append(f"{item.id}: {exc}")
                    log.warning("prediction for %s failed: %s", item.id, exc)
                    if on_record:
                        on_record(None)
                    return
            prediction = Prediction(
                id=item.id,
                prompt=item.prompt,
                response=completion.text,
                length=item.length,
                type=item.type,
                language=item.language,
                model=client.model,
                sample=sample,
                finish_reason=completion.finish_reason,
                usage=completion.usage,
                elapsed_s=time.perf_counter() - started,
            )
            writer.write(prediction)
            result.done += 1
            result.usage = result.usage + completion.usage
            if on_record:
                on_record(prediction)

        await asyncio.gather(*(one(item, s) for item, s in todo))
    return result


async def judge(
    client: ChatClient,
    predictions: Iterable[Prediction],
    out: str | os.PathLike[str],
    *,
    replicates: int = 1,
    template: str | os.PathLike[str] | None = None,
    retries: int = 4,
    temperature: float = 0.5,
    max_tokens: int = 1024,
    concurrency: int = 4,
    retry_failed: bool = False,
    on_record: Callable[[Judgment], None] | None = None,
) -> StageResult:
    """Judge each prediction ``replicates`` times (for judge variance), appending :class:`Judgment` lines.

    Judgments already in ``out`` are kept; earlier failures are retried only with ``retry_failed``.
    """
    out = Path(out)
    text = load_template(template)
    latest = latest_judgments(_existing(out, Judgment))
    keep = {k for k, j in latest.items() if j.status == "ok" or not retry_failed}
    todo = [(p, r) for p in predictions for r in range(replicates) if (p.id, p.sample, r) not in keep]
    result = StageResult(skipped=len(keep))
    semaphore = asyncio.Semaphore(concurrency)
    with JsonlWriter(out) as writer:

        async def one(prediction: Prediction, replicate: int) -> None:
            async with semaphore:
                judgment = await judge_prediction(
                    client,
                    prediction,
                    template=text,
                    replicate=replicate,
                    retries=retries,
                    temperature=temperature,
                    max_tokens=max_tokens,
                )
            writer.write(judgment)
            result.usage = result.usage + judgment.usage
            if judgment.status == "ok":
                result.done += 1
            else:
                result.failed += 1
                result.errors.append(f"{prediction.id}: {judgment.error}")
            if on_record:
                on_record(judgment)

        await asyncio.gather(*(one(p, r) for p, r in todo))
    return result


def read_predictions(path: str | os.PathLike[str]) -> list[Prediction]:
    """Predictions of a file, one per (id, sample): the last line wins, a torn last line is skipped."""
    latest = {(p.id, p.sample): p for p in read_jsonl(path, Prediction)}
    return list(latest.values())


def read_judgments(path: str | os.PathLike[str]) -> list[Judgment]:
    return list(read_jsonl(path, Judgment))
