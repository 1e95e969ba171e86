"""Fixtures for lw-bench: the real benchmark files (by path, never copied) and a scripted model/judge."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lw_core import DIMENSIONS

DATA_DIR = Path(__file__).parents[2].parent / "shared/data/longbench_write"


@pytest.fixture
def data_dir() -> Path:
    if not (DATA_DIR / "longbench_write.jsonl").is_file():
        pytest.skip(f"benchmark data not found at {DATA_DIR}")
    return DATA_DIR


def _model_or_judge(request: dict[str, Any]) -> str:
    """Answers like a model under test, or like a judge when asked to rate (scores depend on the answer)."""
    content = request["messages"][-1]["content"]
    if "<<<RESPONSE" in content:
        response = content.split("<<<RESPONSE\n", 1)[1].split("\nRESPONSE>>>", 1)[0]
        score = 5 if response.startswith("good") else 2
        return "Analysis first.\n```json\n" + json.dumps({"Analysis": "ok", **{d: score for d in DIMENSIONS}}) + "\n```"
    words = 120 if "100" in content else 40
    return "good " + " ".join(["word"] * (words - 1))


@pytest.fixture
def model_or_judge() -> Callable[[dict[str, Any]], str]:
    """Answers like a model under test, or like a judge: 5s for answers starting with "good", else 2s."""
    return _model_or_judge
