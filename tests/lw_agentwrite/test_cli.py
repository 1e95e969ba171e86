"""lw-agentwrite's command line against a scripted server: the shared options reach the client and the agent."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from lw_agentwrite.cli import app
from lw_core import Document, Plan, read_jsonl, write_jsonl
from lw_core.testing import ScriptedServer
from typer.testing import CliRunner

runner = CliRunner()


def test_json_schema_asks_for_json_plans_and_sampling_reaches_every_request(
    tmp_path: Path, scripted: SimpleNamespace
) -> None:
    write_jsonl(tmp_path / "in.jsonl", scripted.instructions(2))
    with ScriptedServer(scripted.reply) as server:
        common = ["--in", str(tmp_path / "in.jsonl"), "--base-url", server.base_url, "--model", "scripted", "-q"]
        result = runner.invoke(app, ["run", *common, "--out", str(tmp_path / "docs.jsonl"), "--json-schema",
                                     "--sampling", "repeat_penalty=1.15", "--sampling", "mirostat=off"])  # fmt: skip
    assert result.exit_code == 0, result.output
    plans = [c for c in server.calls if c.get("response_format")]
    assert len(plans) == 2 and all(p["response_format"]["type"] == "json_schema" for p in plans)
    assert all(c["repeat_penalty"] == 1.15 and c["mirostat"] == "off" for c in server.calls)  # JSON, else text
    documents = list(read_jsonl(tmp_path / "docs.jsonl", Document))
    assert [d.status for d in documents] == ["done", "done"]


def test_plans_without_json_schema_are_text_and_write_uses_them(tmp_path: Path, scripted: SimpleNamespace) -> None:
    write_jsonl(tmp_path / "in.jsonl", scripted.instructions(1))
    with ScriptedServer(scripted.reply) as server:
        common = ["--in", str(tmp_path / "in.jsonl"), "--base-url", server.base_url, "--model", "scripted", "-q"]
        planned = runner.invoke(app, ["plan", *common, "--out", str(tmp_path / "plans.jsonl")])
        wrote = runner.invoke(app, ["write", *common, "--plans", str(tmp_path / "plans.jsonl"),
                                    "--out", str(tmp_path / "docs.jsonl")])  # fmt: skip
    assert planned.exit_code == 0 and wrote.exit_code == 0, planned.output + wrote.output
    assert not any(c.get("response_format") for c in server.calls)
    assert len(list(read_jsonl(tmp_path / "plans.jsonl", Plan))) == 1
    assert len(server.calls) == 1 + scripted.steps  # the plan once, then only sections


def test_bad_key_options_and_values_are_one_red_line(tmp_path: Path, scripted: SimpleNamespace) -> None:
    write_jsonl(tmp_path / "in.jsonl", scripted.instructions(1))
    args = ["run", "--in", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "o.jsonl"), "--base-url",
            "http://127.0.0.1:9/v1", "--model", "m"]  # fmt: skip
    empty = tmp_path / "key"
    empty.write_text("# no key here\n")
    for extra, message in (
        (["--api-key-file", str(empty)], "holds no key"),
        (["--api-key-env", "LW_TEST_UNSET_KEY"], "LW_TEST_UNSET_KEY: the variable is not set"),
        (["--shard", "3/2"], "expected I/N"),
    ):
        result = runner.invoke(app, [*args, *extra], env={"LW_TEST_UNSET_KEY": None})
        assert result.exit_code == 1 and message in result.stderr and "Traceback" not in result.output, extra
    malformed = runner.invoke(app, [*args, "--sampling", "repeat_penalty"])  # lw's KEY=VALUE grammar: a usage error
    assert malformed.exit_code == 2 and "expected KEY=VALUE" in malformed.output
    assert not (tmp_path / "o.jsonl").exists()  # nothing was started
