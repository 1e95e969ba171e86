"""A scripted "model" that plans and writes like a well-behaved LLM, served over real HTTP by ScriptedServer.

Instructions name a topic (``TOPIC-7``); plans have three 100-word paragraphs whose main points
are ``T7 point k``; a write request is answered with exactly the words its prompt asks for, all
different, also across sections (a loop or a copy of an earlier section would be flagged as repetition), in
sentences of ten. So every request can be
traced back to its (topic, step), which the resume tests count.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from lw_core import Instruction

STEP_WORDS = 100
STEPS = 3
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _shared_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """``lw_core.data_file`` reads the shared copies of the paper's prompt files: no download."""
    if SHARED_DATA.is_dir():
        monkeypatch.setenv("LW_DATA_DIR", str(SHARED_DATA))


@pytest.fixture
def paper_prompts() -> Path:
    """The folder holding the paper's plan.txt and write.txt (skips where ../shared/data is missing)."""
    folder = SHARED_DATA / "longwriter_prompts"
    if not (folder / "plan.txt").is_file():
        pytest.skip(f"the paper's prompt files are not at {folder}")
    return folder


def request_key(request: dict[str, Any]) -> tuple[int, int]:
    """(topic, step) of a request: step 0 is the plan."""
    text = request["messages"][0]["content"]
    topic = int(re.search(r"TOPIC-(\d+)", text).group(1))
    if _is_plan(request):
        return topic, 0
    return topic, int(re.findall(r"T\d+ point (\d+)", text)[-1])


def _is_plan(request: dict[str, Any]) -> bool:
    text = request["messages"][0]["content"]
    return "planning assistant" in text or "规划助手" in text


def writer_reply(request: dict[str, Any]) -> str:
    topic, _ = request_key(request)
    if _is_plan(request):
        if request.get("response_format"):
            steps = [{"main_point": f"T{topic} point {k}", "word_count": STEP_WORDS} for k in range(1, STEPS + 1)]
            return json.dumps({"steps": steps})
        return "\n".join(
            f"Paragraph {k} - Main Point: T{topic} point {k} - Word Count: {STEP_WORDS} words"
            for k in range(1, STEPS + 1)
        )
    words = int(re.findall(r"about (\d+) words", request["messages"][-1]["content"])[-1])
    return prose(words, start=start_of(topic, request_key(request)[1]))


def start_of(topic: int, step: int) -> int:
    """Where the words of a (topic, step) begin: no two sections share a word, as no two sections of a text should."""
    return (topic * 10 + step) * 1000


def prose(words: int, start: int = 0) -> str:
    """``words`` distinct words in sentences of ten: ``wa wb ... wj. wk ...`` (letters only: digits are no words)."""
    return " ".join(word(k) + ("." if k % 10 == 9 else "") for k in range(start, start + words))


def word(k: int) -> str:
    letters = ""
    while True:
        k, digit = divmod(k, 26)
        letters = "abcdefghijklmnopqrstuvwxyz"[digit] + letters
        if not k:
            return "w" + letters


def instructions(n: int) -> list[Instruction]:
    return [Instruction(prompt=f"Write an essay on TOPIC-{i}.", length=STEPS * STEP_WORDS) for i in range(n)]


@pytest.fixture
def scripted() -> SimpleNamespace:
    """The scripted writer's pieces: ``reply`` for ScriptedServer, ``key`` of a request, ``instructions(n)``."""
    return SimpleNamespace(reply=writer_reply, key=request_key, instructions=instructions, step_words=STEP_WORDS,
                           steps=STEPS, prose=prose, start_of=start_of)  # fmt: skip
