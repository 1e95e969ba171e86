"""From AgentWrite documents to SFT chats: each filter, the cleaning, and safe file handling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from lw_core import RecordError, SFTRecord, read_jsonl
from lw_data import SFTFilters, build_sft, build_sft_file, extract_length, generate_instructions, read_documents
from lw_data.io import iter_jsonl_batches
from lw_data.lengths import relabel_length
from lw_data.sft import DOCUMENT_SCHEMA, PLAN_SCHEMA, documents_frame, split_plan_answer

LOOSE = SFTFilters(min_words=10, max_words=10_000)
ECHO = LOOSE.model_copy(update={"strip_plan_echo": True})


def frame_of(make: Any, *docs: dict[str, Any]) -> pl.DataFrame:
    return documents_frame(pl.DataFrame(list(docs), schema=DOCUMENT_SCHEMA))


def reason(make: Any, doc: dict[str, Any], filters: SFTFilters = LOOSE) -> str | None:
    kept, rejects = build_sft(frame_of(make, doc), filters)
    assert kept.height + rejects.height == 1
    return rejects["reason"][0] if rejects.height else None


@pytest.mark.parametrize(
    ("build", "filters", "expected"),
    [
        (lambda m: m.document("a", "Write 100 words", [m.prose(100)]), LOOSE, None),
        (lambda m: m.document("a", "", [m.prose(100)]), LOOSE, "missing prompt"),
        (lambda m: m.document("a", "Write", [m.prose(100)], status="failed"), LOOSE, "failed"),
        (lambda m: m.document("a", "Write", [m.prose(100)], status="truncated"), LOOSE, "truncated"),
        (
            lambda m: m.document("a", "Write", [m.prose(100)], status="truncated"),
            LOOSE.model_copy(update={"keep_truncated": True}),
            None,
        ),
        (lambda m: {**m.document("a", "Write", []), "text": "  "}, LOOSE, "empty response"),
        (lambda m: m.document("a", "Write", [m.prose(100), " \n\t"]), LOOSE, "empty section"),
        (
            lambda m: m.document("a", "Write", [m.prose(100), "Paragraph 2 - Main point: the end\n"]),
            ECHO,
            "empty section",
        ),
        (lambda m: m.document("a", "Write", [m.prose(100), "Paragraph 2 - Main point: the end\n"]), LOOSE, None),
        (lambda m: m.document("a", "Write", [m.prose(5)]), LOOSE, "too short"),
        (lambda m: m.document("a", "Write", [m.prose(200)]), LOOSE.model_copy(update={"max_words": 150}), "too long"),
        (lambda m: m.document("a", "Write 1000 words", [m.prose(300)], length=1000), LOOSE, "shorter than requested"),
        (lambda m: m.document("a", "Write 100 words", [m.prose(300)]), LOOSE, "longer than requested"),
        (lambda m: m.document("a", "Write", ["I am a writer. " * 40]), LOOSE, "repetitive"),
        (lambda m: m.document("a", "写一篇100字的文章", ["我是一个作家。" * 20]), LOOSE, "repetitive"),
        (lambda m: m.document("a", "写一篇100字的文章", [m.chinese(100)]), LOOSE, None),
    ],
)
def test_each_filter(make: Any, build: Any, filters: SFTFilters, expected: str | None) -> None:
    assert reason(make, build(make), filters) == expected


def test_first_failing_check_is_the_reason(make: Any) -> None:
    doc = make.document("a", "Write", ["loop loop loop loop"], status="failed")
    assert reason(make, doc) == "failed"


def test_requested_length_comes_from_the_record_then_the_prompt(make: Any) -> None:
    frame = frame_of(
        make,
        make.document("a", "Write 500 words", ["x"], length=300),
        make.document("b", "Write 500 words", ["x"]),
        make.document("c", "Write a poem", ["x"]),
    )
    assert frame["requested"].to_list() == [300, 500, None]


def test_sections_are_joined_as_written_like_the_paper(make: Any) -> None:
    # write.py keeps every answer whole (subtitles included) and joins them with a blank line
    sections = [
        f"### Why the sea rises\n\n{make.prose(40, 1)}\n",
        f"Paragraph 2 - Main Point: the moon\n**Section 2:** Moon\n{make.prose(40, 2)}",
        f"## Part 3. The end\n{make.prose(40, 3)}",
    ]
    kept, _ = build_sft(frame_of(make, make.document("a", "Write about tides", sections)), LOOSE)
    assert kept["messages"][0][1]["content"] == "\n\n".join(s.strip() for s in sections)


def test_plan_echo_and_echoed_prompt_are_stripped_on_request(make: Any) -> None:
    body1, body2, body3 = make.prose(40, 1), make.prose(40, 2), make.prose(40, 3)
    doc = make.document(
        "a",
        "Write about tides",
        [
            f"Write about tides\n\nParagraph 1 - Main point: tides\nWord count: 40 words\n{body1}",
            f"**Paragraph 2:** Moon\n**Section 2:** Moon\n{body2}",
            f"## Part 3. The end\n\n{body3}",
        ],
    )
    kept, _ = build_sft(frame_of(make, doc), ECHO)
    response = kept["messages"][0][1]["content"]
    assert response == f"{body1}\n\n**Section 2:** Moon\n{body2}\n\n## Part 3. The end\n\n{body3}"


def test_chinese_plan_echo_is_stripped_and_subtitles_kept(make: Any) -> None:
    one, two = make.chinese(60, 1), make.chinese(60, 2)
    doc = make.document("a", "写120字", [f"段落1：开头\n字数要求：60字\n{one}", f"第三段：结尾\n第二部分：结尾\n{two}"])
    kept, _ = build_sft(frame_of(make, doc), ECHO)
    assert kept["messages"][0][1]["content"] == f"{one}\n\n第二部分：结尾\n{two}"


def test_task_talk_is_stripped_on_request_and_kept_by_default(make: Any) -> None:
    """Sentences a small teacher writes about its task go (lines left holding a bare list marker too); the prose
    around them, its spacing and its subtitles stay, and a section that was nothing but task talk is empty."""
    body1, body2 = make.prose(40, 1), make.prose(40, 2)
    sections = [
        f"## Tides\n\nHere is a rewritten version of your text:\n\n{body1} This paragraph has two main points. "
        "The moon pulls the sea.",
        f"1. Welcome: This sentence has two main points, one is a welcome.\n2. {body2}",
    ]
    doc = make.document("a", "Write about tides", sections)
    talk = LOOSE.model_copy(update={"strip_task_talk": True})
    kept, _ = build_sft(frame_of(make, doc), talk)
    response = kept["messages"][0][1]["content"]
    assert response == f"## Tides\n\n{body1} The moon pulls the sea.\n\n2. {body2}"
    kept, _ = build_sft(frame_of(make, doc), LOOSE)
    assert "rewritten version" in kept["messages"][0][1]["content"]
    only_talk = make.document("b", "Write", [make.prose(60), "Here is the text you asked for: the word count is 40."])
    assert reason(make, only_talk, talk) == "empty section"
    zh = make.document("c", "写120字", [f"以下是改写后的段落。{make.chinese(60, 1)}"])
    kept, _ = build_sft(frame_of(make, zh), talk)
    assert kept["messages"][0][1]["content"] == make.chinese(60, 1)


def test_headers_inside_the_text_are_kept(make: Any) -> None:
    text = f"{make.prose(30, 1)}\nPart 2 of the journey began at dawn.\n{make.prose(30, 2)}"
    kept, _ = build_sft(frame_of(make, make.document("a", "Write", [text])), ECHO)
    assert kept["messages"][0][1]["content"] == text


def test_text_is_used_when_there_are_no_sections(make: Any) -> None:
    body = make.prose(50)
    doc = {**make.document("a", "Write", []), "text": f"Paragraph 1 - intro\n{body}\n"}
    kept, _ = build_sft(frame_of(make, doc), LOOSE)
    assert kept["messages"][0][1]["content"] == f"Paragraph 1 - intro\n{body}"
    kept, _ = build_sft(frame_of(make, doc), ECHO)
    assert kept["messages"][0][1]["content"] == body


def test_records_are_sft_records_with_meta_and_system_prompt(make: Any) -> None:
    doc = make.document("a", "写一篇100字的文章", [make.chinese(100)], type="prose")
    doc["instruction"]["type"] = "prose"
    kept, _ = build_sft(frame_of(make, doc), LOOSE.model_copy(update={"system_prompt": "You are LongWriter."}))
    record = SFTRecord.model_validate(kept.to_dicts()[0])
    assert [m.role for m in record.messages] == ["system", "user", "assistant"]
    assert record.messages[0].content == "You are LongWriter."
    assert record.meta["language"] == "zh" and record.meta["type"] == "prose"
    assert record.meta["words"] == 100 and record.meta["requested"] == 100


def test_build_file_writes_outputs_and_rejects(tmp_path: Path, make: Any) -> None:
    docs = [make.document(f"d{i}", "Write 100 words", [make.prose(100, i)]) for i in range(7)]
    docs[3]["status"] = "failed"
    docs[5]["sections"][0]["text"] = "loop again " * 60
    path = make.write_lines(tmp_path / "docs.jsonl", docs)
    done: list[int] = []
    summary = build_sft_file(path, tmp_path / "sft.jsonl", filters=LOOSE, batch_rows=3, progress=done.append)
    assert (summary.read, summary.kept) == (7, 5) and sum(done) == 7
    assert summary.rejected == {"failed": 1, "repetitive": 1}
    assert [r.id for r in read_jsonl(tmp_path / "sft.jsonl", SFTRecord)] == ["d0", "d1", "d2", "d4", "d6"]
    rejects = [json.loads(line) for line in (tmp_path / "sft.rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reason"], r["line"]) for r in rejects] == [("d3", "failed", 4), ("d5", "repetitive", 6)]
    assert summary.measures.columns == ["id", "language", "type", "words", "requested"]


def test_bad_line_names_file_and_line_and_writes_nothing(tmp_path: Path, make: Any) -> None:
    docs = [make.document(f"d{i}", "Write", [make.prose(50, i)]) for i in range(5)]
    path = make.write_lines(tmp_path / "docs.jsonl", docs)
    lines = path.read_text().splitlines()
    lines[3] = '{"id": "d3", "instruction": {"prompt": "x"'
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "sft.jsonl"
    out.write_text("previous good output\n")
    with pytest.raises(RecordError, match=r"docs\.jsonl:4"):
        build_sft_file(path, out, filters=LOOSE, batch_rows=2)
    assert out.read_text() == "previous good output\n"
    assert not (tmp_path / "sft.rejects.jsonl").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_torn_last_line_is_skipped(tmp_path: Path, make: Any) -> None:
    docs = [make.document(f"d{i}", "Write", [make.prose(50, i)]) for i in range(3)]
    path = make.write_lines(tmp_path / "docs.jsonl", docs)
    with path.open("a") as fh:
        fh.write('{"id": "d3", "instru')
    summary = build_sft_file(path, tmp_path / "sft.jsonl", filters=LOOSE)
    assert summary.read == 3 and summary.kept == 3


def test_non_object_line_is_an_error(tmp_path: Path, make: Any) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps(make.document("a", "Write", ["x"])) + "\n[1, 2]\n")
    with pytest.raises(RecordError, match=r"docs\.jsonl:2: expected a JSON object"):
        build_sft_file(path, tmp_path / "sft.jsonl")


def test_read_documents_ignores_unknown_fields(tmp_path: Path, make: Any) -> None:
    doc = make.document("a", "Write", ["x"], model="m", usage={"calls": 3}, elapsed_s=1.5)
    frame = read_documents(make.write_lines(tmp_path / "docs.jsonl", [doc]))
    assert frame["id"].to_list() == ["a"] and frame["sections"].to_list() == [["x"]]


@pytest.mark.parametrize(
    ("bad", "field"),
    [({"sections": "not a list"}, "sections"), ({"instruction": {"prompt": "x", "length": "many"}}, "instruction")],
)
def test_wrong_type_names_line_and_field(tmp_path: Path, make: Any, bad: dict[str, Any], field: str) -> None:
    docs = [make.document(f"d{i}", "Write", [make.prose(50, i)]) for i in range(3)]
    docs[2].update(bad)
    path = make.write_lines(tmp_path / "docs.jsonl", docs)
    with pytest.raises(RecordError, match=rf"docs\.jsonl:3: field '{field}': wrong type"):
        build_sft_file(path, tmp_path / "sft.jsonl")


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 100])
def test_batches_keep_line_numbers_across_blank_lines(tmp_path: Path, batch_rows: int) -> None:
    lines = ['{"id": "a"}', "", '{"id": "b"}\r', "   ", '{"id": "c"}', "\t\r", "", '{"id": "d"}', '  {"id": "e"}']
    path = tmp_path / "docs.jsonl"
    path.write_bytes("\n".join(lines).encode())  # no newline after the last line: it is whole, not torn
    frames = list(iter_jsonl_batches(path, {"id": pl.String()}, batch_rows=batch_rows))
    got = [(row["id"], row["_line"]) for frame in frames for row in frame.iter_rows(named=True)]
    assert got == [("a", 1), ("b", 3), ("c", 5), ("d", 8), ("e", 9)]
    assert all(frame.height <= batch_rows for frame in frames)


PLANNED = {**DOCUMENT_SCHEMA, **PLAN_SCHEMA}


def planned_frame(*docs: dict[str, Any]) -> pl.DataFrame:
    return documents_frame(pl.DataFrame(list(docs), schema=PLANNED))


def test_plan_augmented_answers_start_with_the_plan_then_the_text(make: Any) -> None:
    sections = [make.prose(60, 1), make.prose(40, 2)]
    doc = make.document("a", "Write a 100-word note on tides.", sections, length=100)
    doc["plan"]["steps"] = [
        {"index": 1, "main_point": "How the moon pulls the sea", "word_count": 60},
        {"index": 2, "main_point": "Spring and neap tides", "word_count": 40},
    ]
    plain = build_sft(planned_frame(doc), LOOSE)[0]["messages"][0][1]["content"]
    kept, _ = build_sft(planned_frame(doc), LOOSE.model_copy(update={"plan_augmented": True}))
    answer = kept["messages"][0][1]["content"]
    plan = (
        "Paragraph 1 - Main Point: How the moon pulls the sea - Word Count: 60 words\n"
        "Paragraph 2 - Main Point: Spring and neap tides - Word Count: 40 words"
    )
    assert answer == f"{plan}\n\n{plain}"
    assert split_plan_answer(answer) == (plan, plain)  # what lw scores: the text alone
    assert kept["meta"][0]["words"] == 100  # the text's words, not the plan's
    zh = make.document("z", "写一篇100字的短文", [make.chinese(100)], length=100)
    zh["plan"]["steps"] = [{"index": 1, "main_point": "潮汐", "word_count": 100}]
    kept, _ = build_sft(planned_frame(zh), LOOSE.model_copy(update={"plan_augmented": True}))
    assert kept["messages"][0][1]["content"].startswith("段落1 - 主要内容：潮汐 - 字数：100字\n\n")


def test_plan_augmented_keeps_the_papers_plan_lines_and_rejects_documents_without_a_plan(make: Any) -> None:
    line = "Paragraph 1 - Main Point: Tides, in detail - Word Count: 400 words"
    paper = make.document("a", "Write", [make.prose(100)])
    paper["plan"]["steps"] = [{"index": 1, "main_point": line, "word_count": 400}]  # a paper-preset step: its line
    none = {**make.document("b", "Write", [make.prose(100)]), "plan": None}
    kept, rejects = build_sft(planned_frame(paper, none), LOOSE.model_copy(update={"plan_augmented": True}))
    assert kept["messages"][0][1]["content"].startswith(line + "\n\n")
    assert rejects.select("id", "reason").rows() == [("b", "missing plan")]


def test_hindsight_relabelling_asks_for_what_the_answer_has(make: Any) -> None:
    doc = make.document("a", "Write a 1,000-word essay on tides, please.", [make.prose(300, 1), make.prose(100, 2)])
    doc["plan"]["steps"] = [
        {"index": 1, "main_point": "Moon", "word_count": 600},
        {"index": 2, "main_point": "Sun", "word_count": 400},
    ]
    assert reason(make, doc) == "shorter than requested"  # 400 of 1,000 words
    relabel = LOOSE.model_copy(update={"relabel_length": True})
    kept, _ = build_sft(planned_frame(doc), relabel)
    record = SFTRecord.model_validate(kept.to_dicts()[0])
    assert record.messages[0].content == "Write a 400-word essay on tides, please."
    assert record.meta["requested"] == record.meta["words"] == 400 and record.meta["requested_original"] == 1000
    # with the plan in the answer, each step's budget becomes the words its section has
    kept, _ = build_sft(planned_frame(doc), relabel.model_copy(update={"plan_augmented": True}))
    plan, _ = split_plan_answer(kept["messages"][0][1]["content"])
    assert plan.splitlines() == [
        "Paragraph 1 - Main Point: Moon - Word Count: 300 words",
        "Paragraph 2 - Main Point: Sun - Word Count: 100 words",
    ]


def test_relabelled_prompts_read_back_as_the_new_length() -> None:
    instructions = generate_instructions(600, seed=3, min_words=100, max_words=20_000, languages=("en", "zh"))
    for prompt, length in instructions.select("prompt", "length").iter_rows():
        new = length // 3 + 7
        assert extract_length(relabel_length(prompt, new)) == new, prompt


def test_section_headings_are_removed_on_request(make: Any) -> None:
    body, more = make.prose(40, 1), make.prose(40, 2)
    sections = [f"## The Moon\n\n{body}", f"**Spring tides:**\n{more} with **bold words** inside."]
    doc = make.document("a", "Write", sections)
    kept, _ = build_sft(frame_of(make, doc), LOOSE)
    assert kept["messages"][0][1]["content"] == "\n\n".join(sections)  # the paper's answers keep subtitles
    kept, _ = build_sft(frame_of(make, doc), LOOSE.model_copy(update={"strip_headings": True}))
    assert kept["messages"][0][1]["content"] == f"{body}\n\n{more} with **bold words** inside."
