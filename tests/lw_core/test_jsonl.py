import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest
from lw_core import Instruction, JsonlWriter, RecordError, read_jsonl, write_jsonl
from pydantic import BaseModel


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"prompt": "ok"}\n{"prompt": "bad", "length": -3}\n')
    with pytest.raises(RecordError) as err:
        list(read_jsonl(path, Instruction))
    assert f"{path}:2: field 'length'" in str(err.value)
    assert err.value.line == 2 and err.value.field == "length"


def test_invalid_json_in_the_middle_is_an_error_not_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": \n{"prompt": "c"}\n')
    with pytest.raises(RecordError, match=r"in.jsonl:2: invalid JSON"):
        list(read_jsonl(path, Instruction))


def test_skip_invalid_writes_rejects_with_reasons(tmp_path: Path) -> None:
    path, rejects = tmp_path / "in.jsonl", tmp_path / "rejects.jsonl"
    path.write_text('{"prompt": "a"}\n{"length": 5}\nnot json\n{"prompt": "d"}\n')
    got = list(read_jsonl(path, Instruction, on_invalid="skip", rejects=rejects))
    assert [r.prompt for r in got] == ["a", "d"]
    rows = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [r["line"] for r in rows] == [2, 3]
    assert "field 'prompt'" in rows[0]["error"] and rows[1]["raw"] == "not json"


def test_torn_last_line_is_skipped_with_a_warning_and_cut_before_appending(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "unfini')
    assert [r.prompt for r in read_jsonl(path, Instruction)] == ["a", "b"]
    assert "torn last line" in caplog.text
    with JsonlWriter(path) as writer:
        writer.write(Instruction(prompt="c"))
    assert [r.prompt for r in read_jsonl(path, Instruction)] == ["a", "b", "c"]


def test_write_jsonl_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"prompt": "old"}])

    def records():  # type: ignore[no-untyped-def]
        yield {"prompt": "new"}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(path, records())
    assert path.read_text() == '{"prompt": "old"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left behind


class Row(BaseModel):
    i: int
    prompt: str


BIG = 4_000_000  # records of 4 MB: a SIGKILL sometimes lands inside a write and tears the last line


def test_records_stay_whole_contiguous_and_in_order_across_kill_9_and_resume(tmp_path: Path) -> None:
    """A writer killed mid-stream, resumed, killed again...: every record survives whole, in order, none lost.

    Only the record being written at the kill may be lost (a torn line): the reader skips it, and the next writer
    cuts it off, so the resumed run writes that record again right after the last whole one. Real kills tear a line
    only now and then, so every second kill also tears the last record as a kill inside its write would.
    """
    path = tmp_path / "out.jsonl"
    script = textwrap.dedent(
        f"""
        from lw_core import JsonlWriter, read_jsonl
        from pydantic import BaseModel

        class Row(BaseModel):
            i: int
            prompt: str

        i = sum(1 for _ in read_jsonl({str(path)!r}, Row))  # resume after the last whole record
        with JsonlWriter({str(path)!r}) as w:
            while True:
                w.write(Row(i=i, prompt=str(i % 10) * {BIG}))
                i += 1
        """
    )
    path.touch()
    for kill in range(1, 6):
        start = path.stat().st_size
        proc = subprocess.Popen([sys.executable, "-c", script])
        deadline = time.time() + 60
        while path.stat().st_size - start < 20_000_000:
            assert proc.poll() is None and time.time() < deadline, "the writer stopped or wrote nothing"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if kill % 2 == 0 and path.read_bytes().endswith(b"\n"):  # what a kill inside the write leaves
            with path.open("rb+") as fh:
                fh.truncate(path.stat().st_size - BIG // 2)
        data = path.read_bytes()
        tail = data[data.rfind(b"\n") + 1 :]
        rows = list(read_jsonl(path, Row))
        assert [r.i for r in rows] == list(range(len(rows))), f"kill {kill}: records out of order or lost"
        assert all(r.prompt == str(r.i % 10) * BIG for r in rows), f"kill {kill}: a record is not whole"
        assert len(data) - len(tail) == sum(len(r.model_dump_json()) + 1 for r in rows)  # nothing else kept
        if tail:  # the one record lost is the one being written: its line is a prefix of it
            assert Row(i=len(rows), prompt=str(len(rows) % 10) * BIG).model_dump_json().encode().startswith(tail)
    with JsonlWriter(path) as writer:
        writer.write(Row(i=len(rows), prompt="after"))
    again = list(read_jsonl(path, Row))
    assert [r.i for r in again] == list(range(len(rows) + 1)) and again[-1].prompt == "after"


def test_reading_holds_one_line_at_a_time_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    record = Instruction(prompt="p" * 1000).model_dump_json() + "\n"
    path.write_text(record * 20_000)  # 20 MB
    tracemalloc.start()
    try:
        assert sum(1 for _ in read_jsonl(path, Instruction)) == 20_000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, f"reading a 20 MB file took {peak / 1e6:.1f} MB"


@pytest.mark.parametrize("kept", ["", '{"prompt": "a"}\n' * 3])
def test_a_torn_line_longer_than_the_tail_block_is_cut_whole(tmp_path: Path, kept: str) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text(kept + '{"prompt": "' + "x" * 200_000)  # torn, and longer than one backwards read
    with JsonlWriter(path) as writer:
        writer.write({"prompt": "b"})
    assert path.read_text() == kept + '{"prompt": "b"}\n'
