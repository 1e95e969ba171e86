"""The `paper` preset is THUDM/LongWriter's AgentWrite: its prompt files filled as its code fills them, its sampling.

Expected prompts are built here from the original code's logic (agentwrite/plan.py and write.py at commit 3fcfdff)
applied to the shared copies of its prompt files, never from our renderer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lw_agentwrite import AgentWrite, Prompts, run_batch
from lw_core import Document, Instruction, OpenAIChatClient, read_jsonl, write_jsonl
from lw_core.testing import ScriptedServer

# A plan as a model writes it: a preamble, blank lines, a triple newline (leaves an empty step), trailing spaces.
PLAN_REPLY = (
    "\n Here is the plan:\n\n"
    "Paragraph 1 - Main Point: Why tides exist - Word Count: 300 words  \n\n"
    "Paragraph 2 - Main Point: Spring and neap tides - Word Count: 400 words\n\n\n"
    "Paragraph 3 - Main Point: Tides and $TEXT$ people - Word Count: 300 words\n"
)
# Section replies with the whitespace models leave around them.
SECTION_REPLIES = [
    "\n## Why\n\nThe moon pulls.\n",
    "  Spring tides are high. ",
    "",
    "Neap tides are low.\n\n\n",
    "End.",
]
INSTRUCTION = "Write a 1000-word article on tides for $STEP$ readers."
CLI = [sys.executable, "-c", "from lw_agentwrite.cli import app; app()"]


def original_prompts(folder: Path, inst: str, plan_reply: str, replies: list[str]) -> tuple[str, list[str], str]:
    """The original's plan prompt, write prompts and final text, by its code's logic."""
    plan_template = (folder / "plan.txt").read_text(encoding="utf-8")
    write_template = (folder / "write.txt").read_text(encoding="utf-8")
    plan_prompt = plan_template.replace("$INST$", inst)
    plan = plan_reply.strip().replace("\n\n", "\n")
    steps = plan.split("\n")
    text, prompts = "", []
    for step, response in zip(steps, replies, strict=True):
        prompt = (
            write_template.replace("$INST$", inst)
            .replace("$PLAN$", plan.strip())
            .replace("$TEXT$", text.strip())
            .replace("$STEP$", step.strip())
        )
        prompts.append(prompt)
        text += response + "\n\n"
    return plan_prompt, prompts, text


def scripted_model(replies: list[str]):
    answers = iter(replies)

    def reply(request: dict) -> str:
        if "break down the following long-form writing instruction" in request["messages"][0]["content"]:
            return PLAN_REPLY
        return next(answers)

    return reply


def client_for(server: ScriptedServer) -> OpenAIChatClient:
    return OpenAIChatClient(base_url=server.base_url, model="scripted", backoff_s=0.01)


async def test_paper_preset_sends_the_original_prompts_with_the_original_sampling(paper_prompts: Path) -> None:
    replies = [r or "Filler." for r in SECTION_REPLIES]  # the original drops a document with an empty reply
    plan_prompt, write_prompts, text = original_prompts(paper_prompts, INSTRUCTION, PLAN_REPLY, replies)
    assert len(write_prompts) == 5 and "now continue writing ." in write_prompts[3]  # the empty step is written too
    with ScriptedServer(scripted_model(replies)) as server:
        document = await AgentWrite.preset("paper", client_for(server)).run(Instruction(prompt=INSTRUCTION))
    assert document.status == "done", document.error
    sent = [call["messages"] for call in server.calls]
    assert sent == [[{"role": "user", "content": p}] for p in [plan_prompt, *write_prompts]]
    for call in server.calls:  # temperature 1.0, no top_p, 4096 tokens, no schema, for the plan and every section
        assert (call["temperature"], call["max_tokens"]) == (1.0, 4096)
        assert "top_p" not in call and "response_format" not in call
    assert [s.text for s in document.sections] == replies  # kept as they came: the next prompt is built from them
    assert document.text == text.strip()
    assert [s.main_point for s in document.plan.steps][1] == (
        "Paragraph 1 - Main Point: Why tides exist - Word Count: 300 words  "
    )
    assert [s.word_count for s in document.plan.steps] == [None, 300, 400, None, 300]


def test_paper_prompt_files_are_filled_in_the_original_order(paper_prompts: Path) -> None:
    prompts = Prompts.paper()
    assert prompts.plan == (paper_prompts / "plan.txt").read_text(encoding="utf-8")
    assert prompts.write == (paper_prompts / "write.txt").read_text(encoding="utf-8")
    # a value holding a later placeholder is replaced again, as the original's chain of .replace calls does
    rendered = prompts.render("write", INST="use $PLAN$", PLAN="P", TEXT="", STEP="s")
    assert "use P" in rendered
    assert Prompts.paper().plan_prompt(Instruction(prompt="Write $TEXT$.")) == prompts.plan.replace(
        "$INST$", "Write $TEXT$."
    )


async def test_paper_preset_fails_a_document_on_an_empty_reply_and_retries_it_next_run(
    paper_prompts: Path, tmp_path: Path
) -> None:
    with ScriptedServer(scripted_model([*SECTION_REPLIES[:3], "Filler.", *SECTION_REPLIES[3:]])) as server:
        agent = AgentWrite.preset("paper", client_for(server))
        first = await run_batch(agent, [Instruction(prompt=INSTRUCTION)], tmp_path / "docs.jsonl")
        # the original drops the item and writes it again on its next run; the two sections before are kept
        assert first.failed == 1 and "answered step 3" in next(iter(first.errors.values()))
        calls = len(server.calls)
        second = await run_batch(agent, [Instruction(prompt=INSTRUCTION)], tmp_path / "docs.jsonl")
    assert (second.retried, second.done, second.steps_reused) == (1, 1, 3)  # plan and 2 sections reused
    assert len(server.calls) - calls == 3  # steps 3 to 5 only
    (document,) = read_jsonl(tmp_path / "docs.jsonl", Document)
    assert document.status == "done" and len(document.sections) == 5


async def test_paper_plans_of_more_than_50_lines_are_not_written(paper_prompts: Path) -> None:
    long_plan = "\n".join(f"Paragraph {k} - Main Point: p{k} - Word Count: 200 words" for k in range(1, 52))
    with ScriptedServer(lambda request: long_plan) as server:
        document = await AgentWrite.preset("paper", client_for(server)).run(Instruction(prompt="Write."))
    assert document.status == "failed" and "51 lines (more than 50)" in document.error
    assert len(server.calls) == 1  # the original makes one plan call and no checks but this one


def test_unknown_preset_names_the_known_ones() -> None:
    client = OpenAIChatClient(base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(Exception, match="expected one of: paper, lw"):
        AgentWrite.preset("gpt", client)


def test_our_write_prompt_allows_subtitles_and_omits_rhetorical_hooks() -> None:
    for language in ("en", "zh"):
        write = Prompts.default(language).write
        assert "heading" not in write and "标题、" not in write  # no longer forbids headings
    assert "omit open-ended conclusions or other rhetorical hooks" in Prompts.default("en").write
    assert "subtitle" in Prompts.default("en").write and "小标题" in Prompts.default("zh").write


def test_cli_runs_the_paper_preset_with_server_sampling(paper_prompts: Path, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [Instruction(prompt=INSTRUCTION)])
    replies = [r or "Filler." for r in SECTION_REPLIES]
    with ScriptedServer(scripted_model(replies)) as server:
        common = ["--in", str(tmp_path / "in.jsonl"), "--base-url", server.base_url, "--model", "scripted", "-q"]
        done = subprocess.run([*CLI, "run", *common, "--out", str(tmp_path / "docs.jsonl"), "--preset", "paper",
                               "--sampling", "repeat_penalty=1.15"], capture_output=True, text=True)  # fmt: skip
        bad = subprocess.run([*CLI, "run", *common, "--out", str(tmp_path / "x.jsonl"), "--sampling", "oops"],
                             capture_output=True, text=True)  # fmt: skip
        unknown = subprocess.run([*CLI, "run", *common, "--out", str(tmp_path / "y.jsonl"), "--preset", "gpt"],
                                 capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(server.calls) == 6 and all(
        (c["temperature"], c["max_tokens"], c["repeat_penalty"]) == (1.0, 4096, 1.15) for c in server.calls
    )
    assert bad.returncode == 2 and "expected KEY=VALUE" in bad.stderr  # a usage error, as every KEY=VALUE option's
    assert unknown.returncode == 1 and "expected one of: paper, lw" in unknown.stderr
