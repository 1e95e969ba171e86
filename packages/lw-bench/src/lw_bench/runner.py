"""The prediction stage, resumable: one line appended per finished call (the judge stage is in ``judging``).

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
from typing import TypeVar

from lw_core import BenchItem, ChatClient, ClientError, JsonlWriter, Judgment, Prediction, Usage, read_jsonl
from pydantic import BaseModel

log = logging.getLogger(__name__)
R = TypeVar("R", bound=BaseModel)


@dataclass
class StageResult:
    """What one run of a stage did: new records, records found from earlier runs, failures, tokens.

    >>> StageResult(done=3, skipped=117, failed=0).done
    3
    """

    done: int = 0
    skipped: int = 0
    failed: int = 0
    usage: Usage = field(default_factory=Usage)
    errors: list[str] = field(default_factory=list)


def existing_records(path: Path, schema: type[R]) -> list[R]:
    """Records a stage wrote in earlier runs (a torn last line skipped); none when the file does not exist yet."""
    return list(read_jsonl(path, schema, on_invalid="skip")) if path.exists() else []


async def predict(
    client: ChatClient,
    items: Iterable[BenchItem],
    out: str | os.PathLike[str],
    *,
    samples: int = 1,
    max_tokens: int = 32768,
    temperature: float = 0.5,
    top_p: float | None = 0.8,
    concurrency: int = 4,
    on_record: Callable[[Prediction | None], None] | None = None,
) -> StageResult:
    """Answer each item ``samples`` times with the model under test, appending :class:`Prediction` lines to ``out``.

    Defaults are the paper's ``pred.py``: 32768 new tokens, temperature 0.5, and top_p 0.8, which is GLM-4's
    ``chat()`` default that ``pred.py`` leaves in place (and ``vllm_inference.py`` sets); ``top_p=None`` leaves it to
    the server. A failed call is reported and left for the next run (the report's coverage shows the gap); it never
    stops the others. ``on_record`` is called after every item (for progress).
    """
    out = Path(out)
    done = {(p.id, p.sample) for p in existing_records(out, Prediction)}
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


def read_predictions(path: str | os.PathLike[str]) -> list[Prediction]:
    """Predictions of a file, one per (id, sample): the last line wins, a torn last line is skipped."""
    latest = {(p.id, p.sample): p for p in read_jsonl(path, Prediction)}
    return list(latest.values())


def read_judgments(path: str | os.PathLike[str]) -> list[Judgment]:
    return list(read_jsonl(path, Judgment))
