"""LongBench-Write's scoring as RL rewards, in TRL's reward signature: ``f(prompts, completions, **columns)``.

Each reward takes plain completions (strings) or conversational ones (lists of message dicts, whose assistant text is
scored), and reads the required length from the dataset column ``length`` (words; characters for Chinese), as
``Instruction`` and ``BenchItem`` carry it. Pass them to ``trl.GRPOTrainer(reward_funcs=...)`` directly, or name them in
``lw-train grpo``'s config (``func = "lw_bench.rewards:length_reward"``).

- :func:`length_reward` (0–1): the paper's S_l ÷ 100 of the text *before its loop onset*
  (:func:`lw_core.loop_aware_length_score`), so a loop earns nothing past where it starts, and a clean text at the
  required length earns exactly 1.
- :data:`repetition_reward` (−1–0): penalties for what a length reward alone pays for (LongWriter-Zero, arXiv
  2506.18841, saw a length-only reward gamed by repetition): a loop, an unfinished last sentence, task talk.
- :class:`JudgeReward` (0–1, optional): S_q ÷ 100 of a judge behind any :class:`lw_core.ChatClient`, concurrent and
  cached; a failed judgment is ``None`` (TRL leaves it out of the step) and counted, never an exception.

:data:`LENGTH_REWARDS` with :data:`LENGTH_REWARD_WEIGHTS` is the composed default (length + repetition, weight 1 each).
Below, a clean text at the required 16 words totals 1; a loop of 65 words earns the length of its 10 words before the
loop (0.7) and loses half a point for looping:

>>> clean = "The harbour wakes before dawn. Boats leave one by one. Gulls follow them out to sea."
>>> looped = "The harbour wakes before dawn. " + "Boats leave one by one. " * 12
>>> rows = {"prompts": ["Write 16 words."] * 2, "completions": [clean, looped], "length": [16, 16]}
>>> [round(sum(w * r for w, r in zip(LENGTH_REWARD_WEIGHTS, parts)), 2)
...  for parts in zip(*(reward(**rows) for reward in LENGTH_REWARDS))]
[1.0, 0.2]
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lw_core import (
    REPETITION_THRESHOLD,
    TASK_TALK,
    ChatClient,
    OpenAIChatClient,
    Prediction,
    SyncChatClient,
    count_words,
    ends_with_sentence,
    loop_aware_length_score,
    loop_onset,
    quality_score,
    repeated_ngram_ratio,
)

from lw_bench.errors import BenchError
from lw_bench.judging import JudgePreset, judge_prediction, load_template

__all__ = [
    "LENGTH_REWARDS",
    "LENGTH_REWARD_WEIGHTS",
    "JudgeReward",
    "RepetitionReward",
    "completion_text",
    "length_reward",
    "repetition_reward",
]

log = logging.getLogger(__name__)

#: A completion as TRL hands it to a reward: a string, or a list of ``{"role", "content"}`` messages.
Completion = str | Sequence[Mapping[str, Any]]


def completion_text(completion: Completion) -> str:
    """The text a completion wrote: the string itself, or the assistant messages' contents joined.

    >>> completion_text("Tides rise."), completion_text([{"role": "assistant", "content": "Tides rise."}])
    ('Tides rise.', 'Tides rise.')
    """
    if isinstance(completion, str):
        return completion
    parts: list[str] = []
    for message in completion:
        if message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # content blocks: keep the text ones
            parts.extend(b["text"] for b in content if isinstance(b, Mapping) and isinstance(b.get("text"), str))
    return "\n\n".join(parts)


def _required(name: str, completions: Sequence[Completion], length: Sequence[int | None] | None) -> list[int]:
    if length is None:
        raise BenchError(
            f"{name} needs the dataset column 'length' (the required words of each prompt, as in lw's Instruction "
            "records); add it to the training data"
        )
    if len(length) != len(completions):
        raise BenchError(f"{name}: {len(completions)} completions but {len(length)} values in column 'length'")
    missing = [i for i, value in enumerate(length) if value is None or value < 1]
    if missing:
        raise BenchError(f"{name}: row {missing[0]} has no positive required length in column 'length'")
    return [int(value) for value in length if value is not None]


def _log(kwargs: Mapping[str, Any], name: str, value: float) -> None:
    """Report a scalar through TRL's ``log_metric`` (passed to rewards since TRL 1.x) when there is one."""
    log_metric = kwargs.get("log_metric")
    if callable(log_metric):
        log_metric(name, value)


def length_reward(
    completions: Sequence[Completion], length: Sequence[int | None] | None = None, **kwargs: Any
) -> list[float]:
    """S_l ÷ 100 of each completion's text up to its loop onset, against the required ``length``: 0–1.

    A clean text at the required length scores exactly 1; a loop's words count for nothing, so a text that reaches
    the length by looping scores what its words before the loop score.

    >>> clean = " ".join(a + b for a in "abcdefgh" for b in "abcdefgh")  # 64 different words
    >>> loop = "A quiet town by the sea. " + "I am a writer and I write. " * 20  # 166 words, 13 before the loop
    >>> length_reward([clean, clean, loop], length=[64, 128, 166])
    [1.0, 0.5, 0.0]
    """
    required = _required("length_reward", completions, length)
    texts = [completion_text(c) for c in completions]
    return [loop_aware_length_score(need, text) / 100 for need, text in zip(required, texts, strict=True)]


class RepetitionReward:
    """Penalties for degenerate writing, −1–0: ``−(loop·looped + unfinished·cut + task_talk·talks)``.

    Each part is 0–1 for one completion:

    - ``looped``: the share of its words from the loop onset on (:func:`lw_core.loop_onset`), or 1 when its
      repeated-4-gram ratio is above :data:`lw_core.REPETITION_THRESHOLD` (what lw-bench reports as degenerate);
    - ``cut``: 1 when it does not end with a complete sentence (:func:`lw_core.ends_with_sentence`; an empty text
      counts as cut), as when it ran into the token cap;
    - ``talks``: 1 when a sentence talks about the task instead of doing it (:data:`lw_core.TASK_TALK`, lw-data's
      ``strip_task_talk`` pattern: "Here is a rewritten version of your text:").

    The default weights (0.5, 0.25, 0.25) make a full loop cost half the length reward's range, the measured failure
    of the 135M student (docs/results.md), and the two lesser faults a quarter each. ``repetition_reward`` is this
    class with its defaults; shares of completions with each fault go to TRL's ``log_metric`` as
    ``repetition/looped``, ``repetition/degenerate``, ``repetition/cut`` and ``repetition/task_talk``.

    >>> RepetitionReward().parts("Here is the text you asked for: the sea is calm")
    {'looped': 0.0, 'cut': 1.0, 'talks': 1.0, 'degenerate': 0.0}
    >>> repetition_reward(["The sea is calm.", "The sea is calm. " * 30])
    [0.0, -0.5]
    """

    def __init__(self, loop: float = 0.5, unfinished: float = 0.25, task_talk: float = 0.25) -> None:
        if min(loop, unfinished, task_talk) < 0:
            raise BenchError(f"RepetitionReward weights must be >= 0, got {loop}, {unfinished}, {task_talk}")
        self.loop, self.unfinished, self.task_talk = loop, unfinished, task_talk
        self.__name__ = "repetition_reward"  # TRL names a reward's log columns after it

    def __repr__(self) -> str:
        return f"RepetitionReward(loop={self.loop}, unfinished={self.unfinished}, task_talk={self.task_talk})"

    def parts(self, text: str) -> dict[str, float]:
        """The three faults of one text, each 0–1 (see the class docstring), and whether it is ``degenerate``."""
        words = count_words(text)
        onset = loop_onset(text)
        degenerate = repeated_ngram_ratio(text) > REPETITION_THRESHOLD
        looped = 1 - count_words(text[:onset]) / words if onset is not None and words else 0.0
        return {
            "looped": 1.0 if degenerate else looped,
            "cut": 0.0 if ends_with_sentence(text) else 1.0,
            "talks": 1.0 if TASK_TALK.search(text) else 0.0,
            "degenerate": float(degenerate),
        }

    def __call__(self, completions: Sequence[Completion], **kwargs: Any) -> list[float]:
        parts = [self.parts(completion_text(c)) for c in completions]
        for name, key in (("looped", "looped"), ("degenerate", "degenerate"), ("cut", "cut"), ("task_talk", "talks")):
            if parts:
                _log(kwargs, f"repetition/{name}", sum(p[key] > 0 for p in parts) / len(parts))
        return [
            -(self.loop * p["looped"] + self.unfinished * p["cut"] + self.task_talk * p["talks"]) + 0.0 for p in parts
        ]


#: :class:`RepetitionReward` with its documented default weights.
repetition_reward = RepetitionReward()

#: The composed default for RL on length: ``trl.GRPOTrainer(reward_funcs=LENGTH_REWARDS, args=GRPOConfig(
#: reward_weights=LENGTH_REWARD_WEIGHTS))``. A clean text at the required length totals 1, a loop below 0.
LENGTH_REWARDS: list[Callable[..., list[float]]] = [length_reward, repetition_reward]
#: Weights of :data:`LENGTH_REWARDS`, in order: length 1.0, repetition 1.0.
LENGTH_REWARD_WEIGHTS: list[float] = [1.0, 1.0]


class JudgeReward:
    """Judged quality ÷ 100 (S_q of one judgment: the six dimensions' mean of ``(score − 1) × 25``), 0–1.

    Judged through any :class:`lw_core.ChatClient` with lw-bench's judging code (:func:`lw_bench.judge_prediction`:
    the preset's prompt and parser, re-asked ``retries`` times while a reply is incomplete). A batch is judged
    concurrently on the reward's own event loop (TRL calls rewards from synchronous code), at most ``concurrency``
    at once. Each (prompt, completion) is judged once: scores are cached by their hash. A judgment that fails (an
    HTTP error after the client's retries, or no complete reply) is ``None`` — TRL leaves it out of that step's
    reward — and counted in ``failures`` (logged as ``judge/failures`` per step); it is asked again if the same text
    comes back. An empty completion scores 0 without a call. ``close()`` (or ``with``) closes the client.

    ``preset`` defaults to ``lw`` (JSON-schema output where the server offers it, a tolerant parser): the paper's
    prompt needs a GPT-4o-class judge, and a reward must read most replies. Not in :data:`LENGTH_REWARDS`: add it
    with weight 1.0 beside them when a judge is at hand (LongWriter-Zero pairs a length reward with a quality one).
    """

    def __init__(
        self,
        client: ChatClient,
        *,
        preset: JudgePreset = "lw",
        template: str | os.PathLike[str] | None = None,
        concurrency: int = 4,
        retries: int = 1,
        temperature: float = 0.5,
        max_tokens: int = 1024,
    ) -> None:
        if concurrency < 1:
            raise BenchError(f"JudgeReward: concurrency must be >= 1, got {concurrency}")
        self.client, self.preset, self.concurrency = client, preset, concurrency
        self.template = load_template(template, preset=preset)
        self.retries, self.temperature, self.max_tokens = retries, temperature, max_tokens
        self.calls = self.cache_hits = self.failures = 0
        self._cache: dict[str, float] = {}
        self._runner: SyncChatClient | None = None
        self.__name__ = "judge_reward"

    @classmethod
    def from_endpoint(
        cls,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        json_schema: bool = False,
        **options: Any,
    ) -> JudgeReward:
        """A judge behind an OpenAI-compatible endpoint, for config files (``lw-train grpo``'s ``options``).

        The key is read from the environment variable ``api_key_env`` (never from the config); ``json_schema``
        says the server honours JSON-schema output (llama.cpp, SGLang, OpenAI do). Other options go to the class.

        >>> reward = JudgeReward.from_endpoint("http://127.0.0.1:8080/v1", "judge")
        >>> reward.client.model, reward.preset
        ('judge', 'lw')
        """
        from lw_core import Capabilities

        key = None
        if api_key_env is not None:
            key = os.environ.get(api_key_env)
            if not key:
                raise BenchError(f"JudgeReward: the environment variable {api_key_env} (api_key_env) is not set")
        concurrency = int(options.get("concurrency", 4))
        capabilities = Capabilities(json_schema=json_schema, concurrency=concurrency)
        client = OpenAIChatClient(
            base_url=base_url, model=model, api_key=key, capabilities=capabilities, concurrency=concurrency
        )
        return cls(client, **options)

    @staticmethod
    def key(prompt: str, text: str) -> str:
        """The cache key of one (prompt, completion): a hash, so the cache holds no texts."""
        return hashlib.sha256(f"{len(prompt)}:{prompt}{text}".encode()).hexdigest()

    def __call__(
        self,
        prompts: Sequence[Completion],
        completions: Sequence[Completion],
        length: Sequence[int | None] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        if len(prompts) != len(completions):
            raise BenchError(f"judge_reward: {len(prompts)} prompts but {len(completions)} completions")
        asks = [_prompt_text(p) for p in prompts]
        texts = [completion_text(c) for c in completions]
        keys = [self.key(ask, text) for ask, text in zip(asks, texts, strict=True)]
        todo: dict[str, int] = {}
        for index, (key, text) in enumerate(zip(keys, texts, strict=True)):
            if not text.strip() or key in todo:
                continue
            if key in self._cache:
                self.cache_hits += 1
            else:
                todo[key] = index
        before = self.failures
        if todo:
            runner = self._runner or SyncChatClient(self.client)
            self._runner = runner
            required = list(length) if length is not None else [None] * len(texts)
            runner.run(self._judge_all({key: (asks[i], texts[i], required[i]) for key, i in todo.items()}))
        _log(kwargs, "judge/failures", self.failures - before)
        return [0.0 if not text.strip() else self._cache.get(key) for key, text in zip(keys, texts, strict=True)]

    async def _judge_all(self, todo: dict[str, tuple[str, str, int | None]]) -> None:
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(key: str, ask: str, text: str, required: int | None) -> None:
            prediction = Prediction(id=key[:16], prompt=ask, response=text, length=required or 1)
            async with semaphore:
                try:
                    judgment = await judge_prediction(
                        self.client,
                        prediction,
                        preset=self.preset,
                        template=self.template,
                        retries=self.retries,
                        temperature=self.temperature,
                        max_tokens=self.max_tokens,
                    )
                except Exception as exc:  # never fatal to a training step: counted and left out, like a failed call
                    self.failures += 1
                    log.warning("judge reward: judging failed: %r", exc)
                    return
            self.calls += judgment.attempts
            score = quality_score(judgment.scores) if judgment.status == "ok" else None
            if score is None:
                self.failures += 1
                log.warning("judge reward: judgment failed (%s)", judgment.error)
            else:
                self._cache[key] = score / 100

        await asyncio.gather(*(one(key, *args) for key, args in todo.items()))

    def close(self) -> None:
        """Close the client and the reward's event loop."""
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def __enter__(self) -> JudgeReward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _prompt_text(prompt: Completion) -> str:
    """The instruction of a prompt: the string, or the last user message of a conversational prompt."""
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content") for m in prompt if m.get("role") == "user"]
    return next((u for u in reversed(users) if isinstance(u, str)), "")
