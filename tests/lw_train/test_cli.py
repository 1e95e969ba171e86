import json

from lw_train.cli import app
from typer.testing import CliRunner

CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."}]}
LONG = {"messages": [{"role": "user", "content": "Go"}, {"role": "assistant", "content": "word " * 40}]}


def test_pack_reports_fill_and_writes_bins_by_input_line(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("LW_HOME", str(tmp_path / "home"))
    tokenizer.save_pretrained(tmp_path / "tok")
    data = tmp_path / "sft.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [CHAT, LONG, CHAT, CHAT]) + "\n")
    out = tmp_path / "bins.json"
    args = ["pack", str(data), "--tokenizer", str(tmp_path / "tok"), "--max-tokens", "150", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 dropped as over-long" in result.output
    assert "fill" in result.output
    bins = json.loads(out.read_text())["bins"]
    assert sorted(i for b in bins for i in b) == [0, 2, 3]


def test_user_errors_exit_1_without_traceback(tmp_path):
    result = CliRunner().invoke(app, ["pack", str(tmp_path / "missing.jsonl"), "--tokenizer", "x"])
    assert result.exit_code == 1
    assert "error:" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, [])
    assert result.exit_code in (0, 2) and "pack" in result.output
