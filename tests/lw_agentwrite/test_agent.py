"""AgentWrite against real HTTP (lw_core's ScriptedServer): plan, write, budgets, re-asks, truncation, prompts."""

from __future__ import annotations

import asyncio
import itertools
import re
from pathlib import Path

import pytest
from lw_agentwrite import AgentWrite, PlanError, PromptError, Prompts
from lw_core import Capabilities, Instruction, OpenAIChatClient
from lw_core.testing import Reply, ScriptedServer


def client_for(server: ScriptedServer, **kwargs) -> OpenAIChatClient:
    return OpenAIChatClient(base_url=server.base_url, model="scripted", backoff_s=0.01, max_retries=3, **kwargs)


async def test_run_plans_then_writes_every_section_in_order(scripted) -> None:
    with ScriptedServer(scripted.reply) as server:
        document = await AgentWrite(client_for(server)).run(scripted.instructions(1)[0])
    assert document.status == "done", document.error
    assert [s.index for s in document.sections] == [1, 2, 3]
    assert [s.main_point for s in document.plan.steps] == ["T0 point 1", "T0 point 2", "T0 point 3"]
    assert document.word_count == 300 == sum(s.word_count for s in document.sections)
    assert document.usage.calls == len(server.calls) == 4
    assert [scripted.key(c) for c in server.calls] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    # each section's budget sets its max_tokens, so a model that does not stop cannot run away
    assert [c["max_tokens"] for c in server.calls[1:]] == [100 * 2 + 32] * 3


async def test_write_prompts_share_the_longest_prefix(scripted) -> None:
    with ScriptedServer(scripted.reply) as server:
        await AgentWrite(client_for(server)).run(scripted.instructions(1)[0])
    prompts = [c["messages"][0]["content"] for c in server.calls[1:]]
    for earlier, later in itertools.pairwise(prompts[1:]):
        shared = earlier[: earlier.index("\n\nNow write paragraph")]
        assert later.startswith(shared)  # instruction, plan and all text so far come before the step
        assert "Write an essay on TOPIC-0." in shared and "T0 point 3" in shared


async def test_context_sections_shows_only_the_last_sections(scripted) -> None:
    with ScriptedServer(scripted.reply) as server:
        document = await AgentWrite(client_for(server), context_sections=1).run(scripted.instructions(1)[0])
    third = server.calls[3]["messages"][0]["content"]
    first, second = (s.text for s in document.sections[:2])
    assert f"[...]\n\n{second}\n\nNow write paragraph 3" in third and first not in third
    assert document.text == "\n\n".join(s.text for s in document.sections)  # the document keeps every section


async def test_cached_token_fraction_is_reported(scripted) -> None:
    def reply(request):
        return Reply(scripted.reply(request), cached_tokens=10)

    with ScriptedServer(reply) as server:
        document = await AgentWrite(client_for(server)).run(scripted.instructions(1)[0])
    assert document.usage.cached_tokens == 40
    assert document.usage.cached_fraction == pytest.approx(40 / document.usage.prompt_tokens)


async def test_far_too_short_section_is_reasked_once_and_the_longer_kept(scripted) -> None:
    short_once = {"done": False}

    def reply(request):
        if scripted.key(request) == (0, 2) and not short_once["done"]:
            short_once["done"] = True
            return "too short"
        return scripted.reply(request)

    with ScriptedServer(reply) as server:
        document = await AgentWrite(client_for(server)).run(scripted.instructions(1)[0])
    assert [s.attempts for s in document.sections] == [1, 2, 1]
    assert document.sections[1].word_count == 100
    assert len(server.calls) == 5
    reask = server.calls[3]["messages"]
    assert [m["role"] for m in reask] == ["user", "assistant", "user"]
    assert reask[1]["content"] == "too short" and "only 2 words" in reask[2]["content"]


async def test_short_section_is_continued_until_near_its_budget(scripted) -> None:
    continued = itertools.count(1)

    def reply(request):  # section 2 stops after 30 words every time; asked to go on, it adds up to 40 new ones
        topic, step = scripted.key(request)
        last = request["messages"][-1]["content"]
        if step != 2:
            return scripted.reply(request)
        if "Continue paragraph 2" in last:
            missing = int(re.search(r"about (\d+) more words", last).group(1))
            return scripted.prose(min(missing, 40), start=scripted.start_of(topic, 2) + 100 * next(continued))
        return scripted.prose(30, start=scripted.start_of(topic, 2))

    with ScriptedServer(reply) as server:
        agent = AgentWrite(client_for(server), too_short_ratio=0.8, continue_short=3)
        document = await agent.run(scripted.instructions(1)[0])
    second = document.sections[1]
    assert document.status == "done" and second.word_count == 30 + 40 + 30  # re-asked once, then continued twice
    assert second.attempts == 4 and second.text.count("\n\n") == 2
    extend = server.calls[4]["messages"]
    assert [m["role"] for m in extend] == ["user", "assistant", "user"]
    assert "has 30 words" in extend[2]["content"] and "about 70 more words" in extend[2]["content"]
    assert server.calls[4]["max_tokens"] == 70 * 2 + 32  # the missing words set the cap


async def test_section_cut_at_its_cap_keeps_its_last_complete_sentence(scripted) -> None:
    def reply(request):  # section 3 does not stop: 1000 more distinct words in sentences of ten
        text = scripted.reply(request)
        return text if scripted.key(request)[1] != 3 else text + " " + scripted.prose(1000, start=3100)

    with ScriptedServer(reply) as server:
        document = await AgentWrite(client_for(server), max_section_tokens=155).run(scripted.instructions(1)[0])
    assert document.status == "done"  # a trimmed section does not make the document truncated
    cut = document.sections[2]
    assert (cut.finish_reason, cut.word_count, cut.attempts) == ("trimmed", 150, 1)  # 155 cut back to sentence 15
    assert cut.text.endswith(".") and cut.text == scripted.prose(150, start=scripted.start_of(0, 3))
    assert [s.finish_reason for s in document.sections[:2]] == ["stop", "stop"]
    assert len(server.calls) == 4  # not re-asked


async def test_section_cut_where_no_sentence_ends_is_kept_and_truncates_the_document(scripted) -> None:
    def reply(request):
        text = scripted.reply(request)
        return text if scripted.key(request)[1] != 3 else scripted.prose(400, start=3000).replace(".", "")

    with ScriptedServer(reply) as server:
        document = await AgentWrite(client_for(server), max_section_tokens=150).run(scripted.instructions(1)[0])
    assert document.status == "truncated"
    assert (document.sections[2].finish_reason, document.sections[2].word_count) == ("length", 150)
    assert len(server.calls) == 4  # a cut section is not re-asked


async def test_cut_section_untrimmed_when_trimming_is_off(scripted) -> None:
    def reply(request):
        text = scripted.reply(request)
        return text if scripted.key(request)[1] != 3 else text + " " + scripted.prose(1000, start=3100)

    with ScriptedServer(reply) as server:
        agent = AgentWrite(client_for(server), max_section_tokens=155, trim_cut_sections=False)
        document = await agent.run(scripted.instructions(1)[0])
    assert document.status == "truncated"
    assert (document.sections[2].finish_reason, document.sections[2].word_count) == ("length", 155)


async def test_section_that_is_mostly_repetition_sinks_the_document(scripted) -> None:
    def reply(request):  # section 2 loops on one sentence until its cap
        text = scripted.reply(request)
        return text if scripted.key(request)[1] != 2 else "I am a writer. " * 200

    with ScriptedServer(reply) as server:
        agent = AgentWrite(client_for(server), trim_loops=False, reask_repetition=None)
        document = await agent.run(scripted.instructions(1)[0])
        lenient = await agent.model_copy(update={"repetition_limit": None}).run(scripted.instructions(1)[0])
    assert document.status == "truncated"
    assert [s.finish_reason for s in document.sections] == ["stop", "repetitive", "stop"]
    assert lenient.status == "done" and lenient.sections[1].finish_reason == "trimmed"


async def test_section_that_copies_an_earlier_one_is_repetition(scripted) -> None:
    def reply(request):  # section 2 repeats section 1 and adds a sentence
        topic, step = scripted.key(request)
        first = scripted.prose(100, start=scripted.start_of(topic, 1))
        return first + " Then the sea went quiet." if step == 2 else scripted.reply(request)

    with ScriptedServer(reply) as server:
        document = await AgentWrite(client_for(server)).run(scripted.instructions(1)[0])
    assert [s.finish_reason for s in document.sections] == ["stop", "repetitive", "stop"]
    assert document.status == "truncated"


async def test_loop_is_cut_where_it_starts_and_a_short_remainder_reasked(scripted) -> None:
    calls = {"n": 0}

    def reply(request):  # section 2 writes 60 good words, then loops; asked again it writes its 100 words
        if scripted.key(request)[1] != 2:
            return scripted.reply(request)
        calls["n"] += 1
        if calls["n"] == 1:
            return scripted.prose(60, start=2000) + " I am a writer." * 100
        return scripted.prose(100, start=2000)

    with ScriptedServer(reply) as server:
        agent = AgentWrite(client_for(server), trim_loops=True, too_short_ratio=0.7)
        document = await agent.run(scripted.instructions(1)[0])
    assert document.status == "done"
    second = document.sections[1]
    assert (second.attempts, second.word_count, second.finish_reason) == (2, 100, "stop")
    reask = server.calls[3]["messages"]  # the loop was cut where it started: one copy of the looped sentence kept
    first_60 = scripted.prose(60, start=2000)
    assert reask[1]["content"] == first_60 + " I am a writer." and "only 64 words" in reask[2]["content"]


async def test_looping_section_is_reasked_above_reask_repetition(scripted) -> None:
    calls = {"n": 0}

    def reply(request):
        if scripted.key(request)[1] != 2:
            return scripted.reply(request)
        calls["n"] += 1
        return "I am a writer. " * 200 if calls["n"] == 1 else scripted.reply(request)

    with ScriptedServer(reply) as server:
        document = await AgentWrite(client_for(server), trim_loops=False).run(scripted.instructions(1)[0])
    assert document.status == "done" and document.sections[1].attempts == 2
    assert server.calls[3]["messages"] == server.calls[2]["messages"]  # a fresh sample of the same request


async def test_plan_is_requested_as_json_when_the_server_supports_it(scripted) -> None:
    with ScriptedServer(scripted.reply) as server:
        client = client_for(server, capabilities=Capabilities(json_schema=True))
        plan = await AgentWrite(client).plan(scripted.instructions(1)[0])
    assert server.calls[0]["response_format"]["type"] == "json_schema"
    steps_schema = server.calls[0]["response_format"]["json_schema"]["schema"]["properties"]["steps"]
    assert (steps_schema["minItems"], steps_schema["maxItems"]) == (1, 3)  # 300 words: 1..3 sections
    assert steps_schema["items"]["properties"]["word_count"]["maximum"] == 1000
    assert [(s.main_point, s.word_count) for s in plan.steps] == [(f"T0 point {k}", 100) for k in (1, 2, 3)]


async def test_unusable_plans_are_rejected_and_retried(scripted) -> None:
    replies = iter(
        [
            "I would be happy to help!",  # nothing to parse
            "\n".join(f"Paragraph {k} - Main Point: p{k} - Word Count: 5 words" for k in range(1, 61)),  # 60 steps
            "Paragraph 1 - Main Point: a - Word Count: 0 words",  # unusable budget
            "Paragraph 1 - Main Point: a - Word Count: 90000 words",  # absurd budget
        ]
    )

    with ScriptedServer(lambda request: next(replies, None) or scripted.reply(request)) as server:
        agent = AgentWrite(client_for(server), plan_attempts=5, fit_budgets=False)  # fitted, 90000 would become 300
        plan = await agent.plan(scripted.instructions(1)[0])
    assert len(plan.steps) == 3 and len(server.calls) == 5


async def test_plan_failure_gives_a_failed_document_with_every_reason() -> None:
    with ScriptedServer(lambda request: "No.") as server:
        agent = AgentWrite(client_for(server), plan_attempts=2, fallback_plan=False)
        with pytest.raises(PlanError, match="after 2 attempts"):
            await agent.plan(Instruction(prompt="Write a story.", length=500))
        document = await agent.run(Instruction(prompt="Write a story.", length=500))
    assert document.status == "failed"
    assert "attempt 1" in document.error and "attempt 2" in document.error
    assert document.usage.calls == 2


def planner_refuses(scripted) -> object:
    """A model that never gives a plan, and writes the words a section asks for (also for generic main points)."""

    def reply(request):
        text = request["messages"][-1]["content"]
        if "planning assistant" in text or "规划助手" in text:
            return "I would be happy to help!"
        asked = re.findall(r"(?:about|约) ?(\d+) ?(?:words|字)", text)
        return scripted.prose(int(asked[-1]), start=len(text) * 7) if asked else "No."

    return reply


async def test_no_usable_plan_falls_back_to_generic_sections_of_the_requested_length(scripted) -> None:
    instruction = Instruction(prompt="Write an essay on TOPIC-3.", length=2300)
    with ScriptedServer(planner_refuses(scripted)) as server:
        document = await AgentWrite(client_for(server), plan_attempts=2).run(instruction)
    assert document.status == "done", document.error
    plan = document.plan
    assert plan.meta["source"] == "fallback" and "after 2 attempts" in plan.meta["reason"]
    # the paper's 200-1000-word sections: 2300 words in three sections that add up to it
    assert [s.word_count for s in plan.steps] == [767, 767, 766]
    assert plan.steps[0].main_point.startswith("Opening") and plan.steps[-1].main_point.startswith("Closing")
    assert "Part 2 of 3" in plan.steps[1].main_point
    assert document.word_count == 2300 and len(document.sections) == 3
    assert document.usage.calls == len(server.calls) == 2 + 3  # the two plan attempts are accounted for


async def test_fallback_sections_follow_the_presets_section_size_and_the_instructions_language(scripted) -> None:
    with ScriptedServer(planner_refuses(scripted)) as server:
        small = AgentWrite.preset("small", client_for(server), plan_attempts=1)
        plan = await small.plan(Instruction(prompt="Write about tides.", length=400))
        chinese = await AgentWrite(client_for(server), plan_attempts=1).plan(
            Instruction(prompt="写一篇关于潮汐的文章", length=600)
        )
    assert [s.word_count for s in plan.steps] == [134, 133, 133]  # small: sections of at most 150 words
    assert [s.word_count for s in chinese.steps] == [600] and chinese.steps[0].main_point.startswith("完整回应")


async def test_paper_preset_keeps_dropping_an_item_without_a_plan(paper_prompts) -> None:
    with ScriptedServer(lambda request: "\n".join(f"line {k}" for k in range(60))) as server:
        document = await AgentWrite.preset("paper", client_for(server)).run(Instruction(prompt="Write.", length=500))
    assert document.status == "failed" and document.plan is None


async def test_missing_word_counts_share_the_requested_length() -> None:
    plan_text = (
        "Paragraph 1 - Main Point: a - Word Count: 200 words\nParagraph 2 - Main Point: b\nParagraph 3 - Main Point: c"
    )
    with ScriptedServer(lambda request: plan_text) as server:
        plan = await AgentWrite(client_for(server)).plan(Instruction(prompt="x", length=1000))
    assert [s.word_count for s in plan.steps] == [200, 400, 400]


async def test_fitted_budgets_sum_to_the_requested_length() -> None:
    plan_text = "\n".join(f"Paragraph {k} - Main Point: p{k} - Word Count: {w} words" for k, w in ((1, 100), (2, 140)))
    with ScriptedServer(lambda request: plan_text) as server:
        instruction = Instruction(prompt="x", length=1200)
        with pytest.raises(PlanError, match="word counts total 240, far from the requested 1200"):
            await AgentWrite(client_for(server), plan_attempts=1, fit_budgets=False, fallback_plan=False).plan(
                instruction
            )
        plan = await AgentWrite(client_for(server), max_section_words=None).plan(instruction)
    assert [s.word_count for s in plan.steps] == [500, 700]


async def test_chinese_instructions_get_chinese_prompts() -> None:
    plan_text = "段落1 - 主要内容：引言 - 字数：100字\n段落2 - 主要内容：结论 - 字数：100字"

    def reply(request):
        content = request["messages"][0]["content"]
        if "规划助手" in content:
            return plan_text
        start = 0x4E00 + 100 * int(re.findall(r"第 (\d) 段", content)[-1])  # different characters in each section
        return "".join(chr(start + k) for k in range(100))

    with ScriptedServer(reply) as server:
        document = await AgentWrite(client_for(server)).run(
            Instruction(prompt="写一篇关于长城的文章，200字。", length=200)
        )
    assert document.status == "done" and document.word_count == 200
    assert "现在请写计划中的第 2 段（结论），约 100 字" in server.calls[2]["messages"][0]["content"]
    assert "段落1 - 主要内容：引言 - 字数：100字" in server.calls[2]["messages"][0]["content"]


async def test_prompt_templates_can_be_overridden_by_string_or_path(tmp_path: Path, scripted) -> None:
    template = tmp_path / "write.txt"
    template.write_text(
        "CUSTOM $instruction | $plan | $written | step $step_index ($step_point) about $step_words words"
    )
    prompts = Prompts.default("en").replace(write=template)
    with ScriptedServer(scripted.reply) as server:
        document = await AgentWrite(client_for(server), prompts=prompts).run(scripted.instructions(1)[0])
    assert document.status == "done"
    assert all(c["messages"][0]["content"].startswith("CUSTOM ") for c in server.calls[1:])
    assert Prompts.default("en").replace(plan="Plan: $instruction").plan == "Plan: $instruction"
    with pytest.raises(PromptError, match=r"\$written"):
        Prompts.default("en").replace(write="$instruction $plan $step_index")


async def test_streaming_callbacks_see_every_section(scripted) -> None:
    pieces: dict[int, list[str]] = {}
    finished: list[int] = []
    with ScriptedServer(scripted.reply) as server:
        agent = AgentWrite(
            client_for(server),
            on_text=lambda instruction, index, text: pieces.setdefault(index, []).append(text),
            on_section=lambda instruction, section: finished.append(section.index),
        )
        document = await agent.run(scripted.instructions(1)[0])
    assert finished == [1, 2, 3]
    assert ["".join(pieces[s.index]).strip() for s in document.sections] == [s.text for s in document.sections]
    assert all(c.get("stream") for c in server.calls[1:])


def test_run_sync_works_with_and_without_a_running_loop(scripted) -> None:
    with ScriptedServer(scripted.reply) as server:
        agent = AgentWrite(client_for(server))
        assert agent.run_sync("Write an essay on TOPIC-5.").status == "done"

        async def inside_a_loop():
            return agent.model_copy(update={"client": client_for(server)}).run_sync("Write an essay on TOPIC-6.")

        assert asyncio.run(inside_a_loop()).word_count == 300
