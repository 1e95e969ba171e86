"""lw_bench.rewards on constructed texts, and the judge reward against a scripted judge over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from lw_bench import (
    LENGTH_REWARD_WEIGHTS,
    LENGTH_REWARDS,
    BenchError,
    JudgeReward,
    RepetitionReward,
    length_reward,
    repetition_reward,
)
from lw_core import OpenAIChatClient, count_words, loop_onset
from lw_core.testing import ScriptedServer

# 120 different words ("bab", "bac", ...) in 15 sentences of 8: no loop, no repeated 4-gram, ends with a full stop
_WORDS = [a + b + c for a in "bdfghklmnp" for b in "aeiou" for c in "bcdfgklm"][:120]
CLEAN = " ".join(" ".join(_WORDS[i : i + 8]).capitalize() + "." for i in range(0, 120, 8))


def looping(words: int) -> str:
    """A text that writes two sentences, then repeats one until it has ``words`` words."""
    text = "The harbour woke before dawn. A boat left early. "
    while count_words(text) < words:
        text += "The gulls followed the boat out to sea. "
    return text.strip()


def total(completions: list[Any], length: list[int]) -> list[float]:
    parts = [
        reward(prompts=["p"] * len(completions), completions=completions, length=length) for reward in LENGTH_REWARDS
    ]
    return [sum(w * r for w, r in zip(LENGTH_REWARD_WEIGHTS, row, strict=True)) for row in zip(*parts, strict=True)]


def test_a_text_at_the_required_length_without_a_loop_scores_exactly_one_on_length() -> None:
    words = count_words(CLEAN)
    assert loop_onset(CLEAN) is None
    assert length_reward([CLEAN], length=[words]) == [1.0]
    assert repetition_reward([CLEAN]) == [0.0]
    assert total([CLEAN], [words]) == [1.0]
    assert 0 < length_reward([CLEAN], length=[2 * words])[0] < 1  # half the length asked: S_l 50


def test_a_looping_text_scores_below_a_clean_one_of_the_same_length() -> None:
    words = count_words(CLEAN)
    loop = looping(words)
    assert count_words(loop) == pytest.approx(words, abs=8)
    assert length_reward([loop], length=[words])[0] < length_reward([CLEAN], length=[words])[0]
    assert repetition_reward([loop])[0] < repetition_reward([CLEAN])[0]
    assert total([loop], [words])[0] < total([CLEAN], [words])[0] - 0.5


def test_a_loop_earns_nothing_past_its_onset() -> None:
    """More looping words add no length reward: it depends only on the words written before the loop."""
    required = 60
    short, long = looping(80), looping(400)
    assert (
        length_reward([short, long], length=[required, required])
        == [length_reward([short[: loop_onset(short)]], length=[required])[0]] * 2
    )


def test_conversational_and_plain_completions_score_the_same() -> None:
    texts = [CLEAN, looping(120), "Here is the rewritten text: the sea is", ""]
    conversational = [[{"role": "assistant", "content": text}] for text in texts]
    length = [120] * len(texts)
    for reward in LENGTH_REWARDS:
        assert reward(completions=conversational, length=length) == reward(completions=texts, length=length)


@pytest.mark.parametrize(
    ("text", "penalty"),
    [
        ("The sea is calm. The boats are home.", 0.0),
        ("The sea is calm. The boats are", -0.25),  # cut mid-sentence
        ("Here is a rewritten version of your text: The sea is calm.", -0.25),  # task talk
        ("The sea is calm. " * 40, -0.5),  # degenerate: a full loop
        ("", -0.25),  # nothing written: not a finished sentence
    ],
)
def test_repetition_penalties_follow_the_documented_scale(text: str, penalty: float) -> None:
    assert repetition_reward([text]) == [pytest.approx(penalty)]


def test_repetition_weights_are_settable_and_parts_are_logged_through_trl_log_metric() -> None:
    logged: dict[str, float] = {}
    reward = RepetitionReward(loop=1.0, unfinished=0.0, task_talk=0.0)
    texts = ["The sea is calm. " * 40, "The sea is", CLEAN]
    assert reward(completions=texts, log_metric=logged.__setitem__) == [-1.0, 0.0, 0.0]
    assert logged == {
        "repetition/looped": pytest.approx(1 / 3),
        "repetition/degenerate": pytest.approx(1 / 3),
        "repetition/cut": pytest.approx(1 / 3),
        "repetition/task_talk": 0.0,
    }
    with pytest.raises(BenchError, match="must be >= 0"):
        RepetitionReward(loop=-1)


def test_trl_keyword_arguments_are_accepted() -> None:
    """TRL calls rewards with prompts, completions, completion_ids, every dataset column and its own helpers."""
    extra = {"completion_ids": [[1, 2]], "id": ["x"], "trainer_state": object(), "log_extra": lambda *a: None}
    assert length_reward(prompts=["p"], completions=[CLEAN], length=[120], **extra) == [1.0]
    assert repetition_reward(prompts=["p"], completions=[CLEAN], length=[120], **extra) == [0.0]


def test_a_missing_length_column_is_an_error_that_names_it() -> None:
    with pytest.raises(BenchError, match="column 'length'"):
        length_reward([CLEAN])
    with pytest.raises(BenchError, match="row 1 has no positive required length"):
        length_reward([CLEAN, CLEAN], length=[100, None])


# --- the judge reward ---


@pytest.fixture
def judge_server(model_or_judge: Callable[[dict[str, Any]], str]):
    with ScriptedServer(reply=model_or_judge) as server:
        yield server


def judge_client(server: ScriptedServer) -> OpenAIChatClient:
    return OpenAIChatClient(base_url=server.base_url, model="judge", max_retries=0, backoff_s=0.0)


def test_the_judge_reward_is_sq_over_100_and_a_cache_hit_makes_no_second_call(judge_server) -> None:
    prompts = ["Write about the sea.", [{"role": "user", "content": "Write about the sea."}]]
    completions = ["good sea words.", [{"role": "assistant", "content": "good sea words."}]]
    with JudgeReward(judge_client(judge_server)) as reward:
        first = reward(prompts=[prompts[0], "Write about hills."], completions=["good sea words.", "bad hills."])
        assert first == [1.0, 0.25]  # the scripted judge gives 5s to "good ...", 2s otherwise: S_q 100 and 25
        assert len(judge_server.calls) == 2
        again = reward(prompts=prompts, completions=completions)  # plain and conversational: the same key
        assert again == [1.0, 1.0]
        assert len(judge_server.calls) == 2 and reward.cache_hits == 2 and reward.calls == 2
        assert reward(prompts=["Write."], completions=[""]) == [0.0]  # nothing written: 0, no call
        assert len(judge_server.calls) == 2


def test_judge_failures_are_none_counted_and_never_fatal(model_or_judge) -> None:
    logged: dict[str, float] = {}
    server = ScriptedServer(reply=model_or_judge, script=["bad_request", "none"])
    with server, JudgeReward(judge_client(server), concurrency=1) as reward:
        scores = reward(
            prompts=["Write a.", "Write b."], completions=["good a.", "good b."], log_metric=logged.__setitem__
        )
        assert sorted(scores, key=lambda s: s is None) == [1.0, None]
        assert reward.failures == 1 and logged == {"judge/failures": 1}
        # the failed one is asked again when it comes back, and now succeeds
        assert reward(prompts=["Write a.", "Write b."], completions=["good a.", "good b."]) == [1.0, 1.0]
        assert reward.failures == 1


def test_a_judge_that_replies_without_scores_fails_softly() -> None:
    server = ScriptedServer(reply=lambda request: "I like it.")
    with server, JudgeReward(judge_client(server), retries=1) as reward:
        assert reward(prompts=["Write."], completions=["good text."]) == [None]
        assert reward.failures == 1 and len(server.calls) == 2  # asked once more, then given up


def test_a_batch_is_judged_concurrently(model_or_judge) -> None:
    """Four completions with a 0.3 s judge take well under 4 × 0.3 s with concurrency 4."""
    active, peak, lock = [0], [0], threading.Lock()

    def slow_judge(request: dict[str, Any]) -> str:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.3)
        with lock:
            active[0] -= 1
        return model_or_judge(request)

    server = ScriptedServer(reply=slow_judge)
    with server, JudgeReward(judge_client(server), concurrency=4) as reward:
        scores = reward(prompts=[f"Write {i}." for i in range(4)], completions=[f"good {i}." for i in range(4)])
    assert scores == [1.0] * 4 and peak[0] > 1


def test_from_endpoint_reads_the_key_from_the_environment_only(monkeypatch) -> None:
    monkeypatch.delenv("LW_TEST_JUDGE_KEY", raising=False)
    with pytest.raises(BenchError, match="LW_TEST_JUDGE_KEY"):
        JudgeReward.from_endpoint("http://127.0.0.1:1/v1", "judge", api_key_env="LW_TEST_JUDGE_KEY")
    monkeypatch.setenv("LW_TEST_JUDGE_KEY", "secret")
    reward = JudgeReward.from_endpoint("http://127.0.0.1:1/v1", "judge", api_key_env="LW_TEST_JUDGE_KEY", concurrency=2)
    assert reward.concurrency == 2 and "secret" not in repr(reward.client)
