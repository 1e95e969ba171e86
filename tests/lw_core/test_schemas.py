import pytest
from lw_core import (
    BenchItem,
    ChatMessage,
    Document,
    Instruction,
    Judgment,
    Plan,
    PlanStep,
    Prediction,
    PreferencePair,
    SFTRecord,
    Usage,
    stable_id,
)
from pydantic import ValidationError


def test_ids_are_stable_hashes_of_the_prompt() -> None:
    a = Instruction(prompt="Write a story about a fox.")
    b = BenchItem(prompt="Write a story about a fox.", length=500)
    assert a.id == b.id == stable_id("Write a story about a fox.")
    assert Instruction(prompt="x", id="custom").id == "custom"


def test_language_is_detected_when_missing() -> None:
    assert Instruction(prompt="写一篇关于秋天的文章").language == "zh"
    assert Instruction(prompt="写一篇关于秋天的文章", language="en").language == "en"


@pytest.mark.parametrize(
    "record",
    [
        Instruction(prompt="Write 300 words", length=300, type="essay", meta={"src": "x"}),
        Plan(
            instruction_id="i",
            steps=[
                PlanStep(index=1, main_point="intro", word_count=200),
                PlanStep(index=2, main_point="body", word_count=None),
            ],
        ),
        Document(
            id="i",
            instruction=Instruction(prompt="p"),
            text="Hello world",
            status="truncated",
            usage=Usage(prompt_tokens=3, completion_tokens=2, cached_tokens=1, calls=1),
        ),
        SFTRecord(messages=[ChatMessage(role="user", content="hi"), ChatMessage(role="assistant", content="yo")]),
        PreferencePair(
            prompt=[ChatMessage(role="user", content="q")],
            chosen=[ChatMessage(role="assistant", content="a")],
            rejected=[ChatMessage(role="assistant", content="b")],
        ),
        Prediction(id="x", prompt="p", response="one two 三", length=10),
        Judgment(id="x", scores={"Relevance": 4}, analysis="fine"),
    ],
)
def test_records_round_trip_through_json(record) -> None:  # type: ignore[no-untyped-def]
    again = type(record).model_validate_json(record.model_dump_json())
    assert again == record


def test_counts_are_filled_with_the_paper_measure() -> None:
    assert Document(id="i", instruction=Instruction(prompt="p"), text="Hello world 你好").word_count == 4
    assert Prediction(id="x", prompt="p", response="one two 三", length=10).word_count == 3


def test_usage_adds_and_reports_cache_fraction() -> None:
    total = Usage(prompt_tokens=100, cached_tokens=80, calls=1) + Usage(prompt_tokens=100, cached_tokens=0, calls=1)
    assert total.calls == 2 and total.cached_fraction == pytest.approx(0.4)
    assert Usage().cached_fraction is None


def test_invalid_fields_are_rejected() -> None:
    with pytest.raises(ValidationError):
        PlanStep(index=0, main_point="x")
    with pytest.raises(ValidationError):
        BenchItem(prompt="p", length=0)
    with pytest.raises(ValidationError):
        ChatMessage(role="robot", content="x")  # type: ignore[arg-type]
