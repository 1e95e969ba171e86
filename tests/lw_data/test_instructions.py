"""Instructions: loading from every format, normalising, deduplicating, tagging and selecting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from lw_core import Instruction, RecordError, read_jsonl
from lw_data import DataError, prepare_instructions, read_table, select_instructions, write_table

ROWS = [
    {"prompt": "Write a 5000-word essay on tides", "type": "essay"},
    {"prompt": "  Write a 5000-word essay on tides  ", "type": "essay"},  # exact duplicate once trimmed
    {"prompt": "write a 5000 word essay on tides!", "type": "essay"},  # near duplicate
    {"prompt": "写一篇两千字的散文", "type": "prose"},
    {"prompt": "写一篇两千字的散文。", "type": "prose"},  # near duplicate (punctuation)
    {"prompt": "Write a 1.5k words story", "type": "story", "length": 1800},  # the file's length wins
    {"prompt": "A haiku about frost", "type": "poem"},
    {"prompt": "", "type": "poem"},
]


def test_prepare_dedupes_tags_and_gives_reasons() -> None:
    kept, dropped = prepare_instructions(pl.DataFrame(ROWS))
    assert kept["prompt"].to_list() == [
        "Write a 5000-word essay on tides",
        "写一篇两千字的散文",
        "Write a 1.5k words story",
        "A haiku about frost",
    ]
    assert kept["length"].to_list() == [5000, 2000, 1800, None]
    assert kept["language"].to_list() == ["en", "zh", "en", "en"]
    assert dropped["reason"].to_list() == ["exact duplicate", "near duplicate", "near duplicate", "empty prompt"]
    # rows are lw-core Instructions with the same stable ids lw-core computes
    for row in kept.to_dicts():
        assert Instruction.model_validate({**row, "id": ""}).id == row["id"]


def test_file_values_are_kept_or_repaired() -> None:
    frame = pl.DataFrame({"prompt": ["Write a story", "写故事", "Write"], "language": ["EN", "english", None]})
    kept, _ = prepare_instructions(frame.with_columns(id=pl.Series([1, None, 3]), length=pl.Series(["300", "x", None])))
    assert kept["language"].to_list() == ["en", "zh", "en"]
    assert kept["length"].to_list() == [300, None, None]
    assert kept["id"][0] == "1" and len(kept["id"][1]) == 16


def test_prompt_column_aliases_and_messages() -> None:
    kept, _ = prepare_instructions(pl.DataFrame({"instruction": ["Write 300 words"]}))
    assert kept["length"].to_list() == [300]
    chats = pl.DataFrame({"messages": [[{"role": "system", "content": "s"}, {"role": "user", "content": "写500字"}]]})
    kept, _ = prepare_instructions(chats)
    assert kept["prompt"].to_list() == ["写500字"] and kept["language"].to_list() == ["zh"]
    with pytest.raises(DataError, match="no prompt column"):
        prepare_instructions(pl.DataFrame({"text": ["x"]}), source="bad.csv")


def test_select_by_length_language_type_and_sample() -> None:
    kept, _ = prepare_instructions(pl.DataFrame(ROWS))
    assert select_instructions(kept, min_length=2000, require_length=True)["length"].to_list() == [5000, 2000]
    assert select_instructions(kept, max_length=1999)["prompt"].to_list() == [
        "Write a 1.5k words story",
        "A haiku about frost",
    ]
    assert select_instructions(kept, languages=["zh"]).height == 1
    assert select_instructions(kept, types=["essay", "poem"]).height == 2
    first = select_instructions(kept, n=2, seed=3)
    assert first.height == 2 and first.equals(select_instructions(kept, n=2, seed=3))
    assert select_instructions(kept, n=100).height == kept.height


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_read_table_formats(tmp_path: Path, suffix: str) -> None:
    frame = pl.DataFrame({"prompt": ["Write 300 words", "写500字"], "type": ["a", "b"]})
    path = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        frame.write_csv(path)
    else:
        write_table(frame, path)
    assert read_table(path).select("prompt", "type").equals(frame)


def test_read_table_hf_folder(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"prompt": ["Write 300 words"], "length": [300]}).save_to_disk(str(tmp_path / "ds"))
    assert read_table(tmp_path / "ds").to_dicts() == [{"prompt": "Write 300 words", "length": 300}]


def test_read_table_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "missing.jsonl")
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(DataError, match="unknown format"):
        read_table(tmp_path / "x.xml")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n{"prompt": \n{"prompt": "c"}\n')
    with pytest.raises(RecordError, match=r"bad\.jsonl:2"):
        read_table(bad)


def test_write_table_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_table(pl.DataFrame({"a": [1]}), path)

    class Boom(pl.DataFrame):
        def write_ndjson(self, file: Any = None) -> Any:
            file.write(b'{"a": 2}\n{"a"')
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_table(Boom({"a": [2]}), path)
    assert path.read_text() == '{"a":1}\n'
    assert not list(tmp_path.glob(".*.tmp"))


def test_written_instructions_are_lw_core_records(tmp_path: Path) -> None:
    kept, _ = prepare_instructions(pl.DataFrame(ROWS))
    path = write_table(kept, tmp_path / "instructions.jsonl")
    records = list(read_jsonl(path, Instruction))
    assert [r.length for r in records] == [5000, 2000, 1800, None]
    assert json.loads(path.read_text().splitlines()[1])["language"] == "zh"
