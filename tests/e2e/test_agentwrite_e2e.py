"""AgentWrite end to end: the real CPU server with the embedded SmolLM2-135M plans and writes a short piece."""

from __future__ import annotations

import pytest
from lw_agentwrite import AgentWrite
from lw_core import Instruction, count_words


@pytest.mark.slow
def test_agentwrite_plans_and_writes_every_section_with_the_embedded_model(embedded_server, record_property) -> None:
    prompt = "Write a 300-word essay about the sea in three paragraphs: its colours, its creatures, its storms."
    instruction = Instruction(prompt=prompt, length=300)
    # the 135M model does not stop by itself: cap every section at 1.5 tokens per budgeted word; sections of at
    # most 100 words make the server's JSON schema ask for (at least) 3 sections
    agent = AgentWrite(
        embedded_server.client, temperature=0.0, tokens_per_word=1.5, max_section_words=100, plan_max_tokens=400
    )
    document = agent.run_sync(instruction)

    assert document.status in ("done", "truncated"), document.error
    assert len(document.plan.steps) == 3  # the JSON schema asks for 3 to 3 sections of at most 100 words
    assert [s.index for s in document.sections] == [s.index for s in document.plan.steps]
    assert all(s.text.strip() for s in document.sections)
    assert document.word_count == count_words(document.text) > 0
    assert document.usage.calls >= 1 + len(document.sections)
    assert document.usage.completion_tokens > 0
    record_property("word_count", document.word_count)
    cached = document.usage.cached_fraction
    print(f"\nAgentWrite e2e: {len(document.sections)} sections, {document.word_count} words "
          f"(asked 300), status {document.status}, {document.usage.calls} calls, "
          f"prefix-cache {cached if cached is None else f'{cached:.0%}'}, {document.elapsed_s:.1f}s")  # fmt: skip
