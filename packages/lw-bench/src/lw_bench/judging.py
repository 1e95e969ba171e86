"""The quality judge: prompt templates, reply parsers, one judgment, and the resumable judge stage.

Two presets. ``paper`` (the default) is THUDM/LongWriter's ``evaluation/eval_quality.py``: its ``judge.txt``
filled with two ``str.replace`` calls, one user message, temperature 0.5, 1024 tokens, the reply read as the
original reads it (the first ```json block, newlines removed, ``json.loads``), and up to 5 tries while a reply
lacks a dimension. ``lw`` is ours: a delimited prompt without an example to anchor on, JSON-schema output when the
server supports it, and a tolerant parser that reads the judge's reply alone and prefers the last ```json block,
then the last brace-balanced object naming a dimension, so an analysis that quotes the rated response (or an
injection inside it) cannot set the scores.

Failed calls are not retried here: the client has its own retry layer for transient HTTP failures, and a
non-retryable one (e.g. HTTP 400 "maximum context length") would fail again; either is recorded at once as a failed
judgment with the reason (``--retry-failed`` tries it again on a later run).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from lw_core import (
    DIMENSIONS,
    ChatClient,
    ClientError,
    JsonlWriter,
    Judgment,
    Prediction,
    Usage,
    data_file,
    json_schema_format,
)

from lw_bench.errors import BenchError, JudgmentParseError
from lw_bench.runner import StageResult, existing_records
from lw_bench.scoring import latest_judgments

log = logging.getLogger(__name__)

JudgePreset = Literal["paper", "lw"]
#: The paper's judge prompt, as a :func:`lw_core.data_file` name.
PAPER_TEMPLATE = "longwriter_prompts/judge.txt"

#: JSON schema the judge is constrained to when the backend supports it.
JUDGMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"Analysis": {"type": "string"}, **{d: {"enum": [1, 2, 3, 4, 5]} for d in DIMENSIONS}},
    "required": ["Analysis", *DIMENSIONS],
    "additionalProperties": False,
}

_PAPER_FENCE = re.compile(r"```json\n(.*?)\n```", re.DOTALL)
_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _normalise_key(key: str) -> str:
    return re.sub(r"[^a-z]", "", key.lower().replace("&", "and"))


_KEYS = {_normalise_key(d): d for d in DIMENSIONS}


def paper_template() -> str:
    """The paper's judge prompt, THUDM/LongWriter ``evaluation/judge.txt`` (found by :func:`lw_core.data_file`)."""
    return data_file(PAPER_TEMPLATE).read_text(encoding="utf-8")


def lw_template() -> str:
    """Our judge prompt (the ``lw`` preset): delimited data, told to ignore length, asks for a fenced JSON block."""
    return resources.files("lw_bench").joinpath("prompts/lw_judge.txt").read_text(encoding="utf-8")


def load_template(path: str | os.PathLike[str] | None = None, *, preset: JudgePreset = "paper") -> str:
    """The judge template at ``path``, or the preset's own; a file must hold both ``$INST$`` and ``$RESPONSE$``."""
    if path is None:
        return paper_template() if preset == "paper" else lw_template()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"cannot read judge template {path}: {exc}") from exc
    missing = [p for p in ("$INST$", "$RESPONSE$") if p not in text]
    if missing:
        raise BenchError(f"{path}: judge template lacks {', '.join(missing)}; put them where the prompt and answer go")
    return text


def judge_prompt(prompt: str, response: str, template: str | None = None) -> str:
    """The judge's message for one answer: the paper's judge.txt (or ``template``) filled as the original fills it.

    ``template.replace('$INST$', prompt).replace('$RESPONSE$', response)``, as in ``eval_quality.py``.

    >>> judge_prompt("Write a haiku", "Autumn moonlight", template="[$INST$] <$RESPONSE$>")
    '[Write a haiku] <Autumn moonlight>'
    """
    text = paper_template() if template is None else template
    return text.replace("$INST$", prompt).replace("$RESPONSE$", response)


def _fill_once(template: str, prompt: str, response: str) -> str:
    """The ``lw`` preset's fill: one pass, so a ``$RESPONSE$`` inside the prompt text is not expanded."""
    values = {"$INST$": prompt, "$RESPONSE$": response}
    return re.sub(r"\$INST\$|\$RESPONSE\$", lambda m: values[m.group(0)], template)


def _balanced_objects(text: str) -> list[str]:
    """Every top-level ``{...}`` substring, with braces inside JSON strings ignored."""
    found, depth, start, in_string, escaped = [], 0, 0, False, False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"' and depth:
            in_string = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                found.append(text[start : i + 1])
    return found


def _load(candidate: str) -> dict[str, Any] | None:
    for text in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
        try:
            value = json.loads(text, strict=False)  # strict=False: raw newlines inside the analysis
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            nested = value.get("scores")
            return {**value, **nested} if isinstance(nested, dict) else value
    return None


def _coerce(dim: str, value: Any) -> int:
    if isinstance(value, bool):
        raise JudgmentParseError(f"score for {dim!r} is a boolean ({value}), expected an integer 1–5")
    if isinstance(value, str):
        text = value.strip().split("/")[0].strip()  # "4" or "4/5"
        try:
            value = float(text)
        except ValueError:
            raise JudgmentParseError(f"score for {dim!r} is not a number: {value!r}") from None
    if not isinstance(value, int | float) or value != int(value):
        raise JudgmentParseError(f"score for {dim!r} must be a whole number 1–5, got {value!r}")
    if not 1 <= int(value) <= 5:
        raise JudgmentParseError(f"score for {dim!r} is out of range 1–5: {value!r}")
    return int(value)


def _parse_lw(text: str) -> Judgment:
    def scored_objects(candidates: list[str]) -> list[dict[str, Any]]:
        objects = [o for o in map(_load, candidates) if o is not None]
        return [o for o in objects if any(_normalise_key(k) in _KEYS for k in o)]

    fenced = scored_objects([c for block in _FENCE.findall(text) for c in _balanced_objects(block)])
    anywhere = fenced or scored_objects(_balanced_objects(text))
    if not anywhere:
        raise JudgmentParseError(f"no JSON object with scores in the judge reply: {text[:200]!r}")
    chosen = anywhere[-1]
    scores: dict[str, int] = {}
    analysis = None
    for key, value in chosen.items():
        name = _KEYS.get(_normalise_key(key))
        if name is not None:
            scores[name] = _coerce(name, value)
        elif _normalise_key(key) == "analysis" and isinstance(value, str):
            analysis = value
    missing = [d for d in DIMENSIONS if d not in scores]
    if missing:
        raise JudgmentParseError(f"judge reply lacks scores for {', '.join(missing)}")
    return Judgment(scores=scores, analysis=analysis)


def _parse_paper(text: str) -> Judgment:
    """``eval_quality.py``'s reading: the first ```json block if the reply has one, newlines dropped, json.loads."""
    output: str | None = text
    if "```json" in text:
        match = _PAPER_FENCE.search(text)
        output = match.group(1) if match else None
    if output is None:
        raise JudgmentParseError(f"judge reply opens a ```json block that does not close: {text[:200]!r}")
    try:
        value = json.loads(output.replace("\n", ""))
    except json.JSONDecodeError as exc:
        raise JudgmentParseError(f"judge reply is not JSON ({exc.msg}): {text[:200]!r}") from None
    if not isinstance(value, dict):
        raise JudgmentParseError(f"judge reply is JSON but not an object: {text[:200]!r}")
    missing = [d for d in DIMENSIONS if d not in value]
    if missing:
        raise JudgmentParseError(f"judge reply lacks scores for {', '.join(missing)}")
    analysis = value.get("Analysis")
    return Judgment(
        scores={d: _coerce(d, value[d]) for d in DIMENSIONS}, analysis=analysis if isinstance(analysis, str) else None
    )


def parse_judgment(text: str, *, preset: JudgePreset = "paper") -> Judgment:
    """The six scores (and analysis) in a judge reply; raises :class:`JudgmentParseError` if incomplete.

    ``paper`` reads the reply as the original does; ``lw`` also takes trailing commas, ``"4/5"``, a nested
    ``scores`` object and prose around the object. Scores must be whole numbers 1–5 either way ("4" and 4.0 count).

    >>> parse_judgment('Fine. ```json\\n{"Relevance": "4", "Accuracy": 4.0, "Coherence": 3, "Clarity": 5,'
    ...                ' "Breadth and Depth": 2, "Reading Experience": 3,}\\n```', preset="lw").scores["Accuracy"]
    4
    """
    return _parse_paper(text) if preset == "paper" else _parse_lw(text)


def _client_failure(exc: ClientError) -> str:
    kind = "retryable, retries exhausted" if exc.retryable else "not retryable"
    status = f"HTTP {exc.status_code}, " if exc.status_code is not None else ""
    return f"{exc} ({status}{kind}, {exc.attempts} attempt{'s' if exc.attempts != 1 else ''})"


async def judge_prediction(
    client: ChatClient,
    prediction: Prediction,
    *,
    preset: JudgePreset = "paper",
    template: str | None = None,
    replicate: int = 0,
    retries: int = 4,
    temperature: float = 0.5,
    max_tokens: int = 1024,
) -> Judgment:
    """Rate one prediction; an incomplete reply is asked again ``retries`` times, then recorded as a failure.

    Defaults are the paper's (GPT-4o in the paper; temperature 0.5, 1024 tokens, 5 tries). ``template`` is the
    template text (default: the preset's). A failed call ends the judgment at once (see the module docstring).
    The ``lw`` preset asks for JSON-schema output exactly when ``client.capabilities.json_schema`` is true.
    """
    text = template if template is not None else load_template(preset=preset)
    if preset == "paper":
        prompt = judge_prompt(prediction.prompt, prediction.response, text)
    else:
        prompt = _fill_once(text, prediction.prompt, prediction.response)
    schema = preset == "lw" and client.capabilities.json_schema
    response_format = json_schema_format("judgment", JUDGMENT_SCHEMA) if schema else None
    usage, error, attempt = Usage(), "", 0
    for attempt in range(1, retries + 2):
        try:
            completion = await client.complete(
                [{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                temperature=temperature,
                response_format=response_format,
            )
        except ClientError as exc:
            error = _client_failure(exc)
            break
        usage = usage + completion.usage
        try:
            parsed = parse_judgment(completion.text, preset=preset)
        except JudgmentParseError as exc:
            error = f"{exc}"
            continue
        return parsed.model_copy(
            update={
                "id": prediction.id,
                "sample": prediction.sample,
                "replicate": replicate,
                "judge": client.model,
                "attempts": attempt,
                "usage": usage,
            }
        )
    return Judgment(
        id=prediction.id,
        sample=prediction.sample,
        replicate=replicate,
        judge=client.model,
        status="failed",
        error=error,
        attempts=attempt,
        usage=usage,
    )


async def judge(
    client: ChatClient,
    predictions: Iterable[Prediction],
    out: str | os.PathLike[str],
    *,
    preset: JudgePreset = "paper",
    replicates: int = 1,
    template: str | os.PathLike[str] | None = None,
    retries: int = 4,
    temperature: float = 0.5,
    max_tokens: int = 1024,
    concurrency: int = 4,
    retry_failed: bool = False,
    on_record: Callable[[Judgment], None] | None = None,
) -> StageResult:
    """Judge each prediction ``replicates`` times (for judge variance), appending :class:`Judgment` lines to ``out``.

    ``template`` is a file (default: the preset's prompt). Judgments already in ``out`` are kept; earlier failures
    are retried only with ``retry_failed``.
    """
    out = Path(out)
    text = load_template(template, preset=preset)
    latest = latest_judgments(existing_records(out, Judgment))
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
                    preset=preset,
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
                log.warning("judgment of %s failed: %s", prediction.id, judgment.error)
            if on_record:
                on_record(judgment)

        await asyncio.gather(*(one(p, r) for p, r in todo))
    return result
