import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from lw_core import Instruction, JsonlWriter, RecordError, read_jsonl, write_jsonl


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


def test_appender_survives_kill_9(tmp_path: Path) -> None:
    """A writer killed mid-stream leaves only whole records (plus at most one torn line that reads skip)."""
    path = tmp_path / "out.jsonl"
    script = textwrap.dedent(
        f"""
        from lw_core import JsonlWriter
        with JsonlWriter({str(path)!r}) as w:
            i = 0
            while True:
                w.write({{"prompt": "x" * 5000, "i": i}})
                i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 30
    while (not path.exists() or path.stat().st_size < 2_000_000) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rows = list(read_jsonl(path, Instruction))
    assert len(rows) > 100
    assert [r.meta for r in rows] == [{}] * len(rows)
    with JsonlWriter(path) as writer:
        writer.write({"prompt": "after"})
    again = list(read_jsonl(path, Instruction))
    assert len(again) == len(rows) + 1 and again[-1].prompt == "after"
