"""AgentWrite end to end: the real CPU server with the embedded SmolLM2-135M plans and writes a short piece."""

from __future__ import annotations

import pytest
from lw_agentwrite import AgentWrite, preset_sampling
from lw_agentwrite.trim import trim_to_sentence
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


@pytest.mark.slow
def test_small_preset_fits_budgets_and_ends_sections_on_sentences(embedded_server) -> None:
    """The small preset on the real 135M model: budgets add up to the request, no section ends mid-sentence."""
    instruction = Instruction(prompt="Write a 300-word blog post about why people should learn to cook.", length=300)
    client = embedded_server.new_client(extra_body=preset_sampling("small"))
    document = AgentWrite.preset("small", client).run_sync(instruction)

    assert document.status in ("done", "truncated"), document.error
    assert len(document.plan.steps) >= 2  # the JSON schema asks for sections of at most 150 words
    assert sum(s.word_count for s in document.plan.steps) == 300  # fitted to the request
    for section in document.sections:
        assert section.finish_reason in ("stop", "trimmed", "repetitive", "length"), section.finish_reason
        if section.finish_reason == "trimmed":  # ends on a complete sentence: trimming it again changes nothing
            assert trim_to_sentence(section.text) == section.text
    print(f"\nsmall preset e2e: {document.word_count} words (asked 300), {len(document.sections)} sections, "
          f"{[s.finish_reason for s in document.sections]}, {document.usage.calls} calls")  # fmt: skip
