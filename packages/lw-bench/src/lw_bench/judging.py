"""The quality judge: our prompt template, a tolerant reply parser, and one judgment with retries.

A reply counts only if it yields all six scores as integers 1–5 (the paper retries otherwise). The
parser reads the judge's reply alone — the rated response is never parsed — and prefers the last
```json block, then the last brace-balanced object that names a dimension, so an analysis that
quotes the response (or an injection inside it) does not override the judge's own verdict.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from lw_core import DIMENSIONS, ChatClient, ClientError, Judgment, Prediction, Usage, json_schema_format

from lw_bench.errors import BenchError, JudgmentParseError

#: JSON schema the judge is constrained to when the backend supports it.
JUDGMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"Analysis": {"type": "string"}, **{d: {"enum": [1, 2, 3, 4, 5]} for d in DIMENSIONS}},
    "required": ["Analysis", *DIMENSIONS],
    "additionalProperties": False,
}

_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _normalise_key(key: str) -> str:
    return re.sub(r"[^a-z]", "", key.lower().replace("&", "and"))


_KEYS = {_normalise_key(d): d for d in DIMENSIONS}


def default_template() -> str:
    """Our judge prompt, with the paper's ``$INST$`` and ``$RESPONSE$`` placeholders."""
    return resources.files("lw_bench").joinpath("prompts/judge.txt").read_text(encoding="utf-8")


def load_template(path: str | os.PathLike[str] | None = None) -> str:
    """The judge template at ``path`` (e.g. the paper's ``judge.txt``), or ours; it must hold both placeholders."""
    if path is None:
        return default_template()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"cannot read judge template {path}: {exc}") from exc
    missing = [p for p in ("$INST$", "$RESPONSE$") if p not in text]
    if missing:
        raise BenchError(f"{path}: judge template lacks {', '.join(missing)}; put them where the prompt and answer go")
    return text


def render_judge_prompt(template: str, prompt: str, response: str) -> str:
    """Fill the template in one pass, so a ``$RESPONSE$`` inside the prompt text is not expanded."""
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


def parse_judgment(text: str) -> Judgment:
    """The six scores (and analysis) in a judge reply; raises :class:`JudgmentParseError` if incomplete.

    >>> parse_judgment('Fine. ```json\\n{"Relevance": "4", "Accuracy": 4.0, "Coherence": 3, "Clarity": 5,'
    ...                ' "Breadth and Depth": 2, "Reading Experience": 3,}\\n```').scores["Accuracy"]
    4
    """

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


async def judge_prediction(
    client: ChatClient,
    prediction: Prediction,
    *,
    template: str | None = None,
    replicate: int = 0,
    retries: int = 4,
    temperature: float = 0.5,
    max_tokens: int = 1024,
) -> Judgment:
    """Rate one prediction; unparseable replies and failed calls are retried, then recorded as a failure.

    Defaults follow the paper (GPT-4o, temperature 0.5, 1024 tokens, 5 tries). JSON-schema output is
    requested exactly when ``client.capabilities.json_schema`` is true.
    """
    prompt = render_judge_prompt(template or default_template(), prediction.prompt, prediction.response)
    response_format = json_schema_format("judgment", JUDGMENT_SCHEMA) if client.capabilities.json_schema else None
    usage, error = Usage(), ""
    for attempt in range(1, retries + 2):
        try:
            completion = await client.complete(
                [{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                temperature=temperature,
                response_format=response_format,
            )
        except ClientError as exc:
            error = str(exc)
            continue
        usage = usage + completion.usage
        try:
            parsed = parse_judgment(completion.text)
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
        attempts=retries + 1,
        usage=usage,
    )
