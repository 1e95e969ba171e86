"""AgentWrite's settings are one checked model: bad values fail naming the field, presets keep their values, and the
command line reads them from --config and --set with lw's one grammar."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from lw_agentwrite import PRESETS, AgentWrite, AgentWriteError, AgentWriteOptions
from lw_agentwrite.cli import app
from lw_core import OpenAIChatClient, write_jsonl
from lw_core.testing import ScriptedServer
from typer.testing import CliRunner

CLIENT = OpenAIChatClient(base_url="http://127.0.0.1:9/v1", model="m")

#: The ``lw`` preset as it was before the settings became a model: these values must not drift.
LW = {
    "temperature": 0.5, "top_p": 0.8, "max_steps": 50, "max_section_words": 1000, "plan_attempts": 3,
    "plan_max_tokens": 1024, "tokens_per_word": 2.0, "max_section_tokens": 8192, "too_short_ratio": 0.5,
    "continue_short": 0, "default_section_words": 500, "fit_budgets": True, "trim_cut_sections": True,
    "trim_loops": True, "reask_repetition": 0.3, "repetition_limit": 0.5, "context_sections": None,
    "fallback_plan": True,
}  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"temperature": -0.1}, "field 'temperature': Input should be greater than or equal to 0"),
        ({"top_p": 1.5}, "field 'top_p': Input should be less than or equal to 1"),
        ({"plan_max_tokens": 0}, "field 'plan_max_tokens': Input should be greater than or equal to 1"),
        ({"max_section_tokens": -5}, "field 'max_section_tokens'"),
        ({"tokens_per_word": 0}, "field 'tokens_per_word': Input should be greater than 0"),
        ({"repetition_limit": 2}, "field 'repetition_limit'"),
        ({"continue_short": -1}, "field 'continue_short'"),
        ({"max_steps": "many"}, "field 'max_steps': Input should be a valid integer"),
        ({"tempreature": 1.0}, "field 'tempreature': unknown key (a typo?); known keys: client, context_sections"),
    ],
)
def test_a_bad_setting_is_one_agentwrite_error_naming_the_field(settings: dict[str, object], message: str) -> None:
    with pytest.raises(AgentWriteError) as raised:
        AgentWrite(CLIENT, **settings)
    assert str(raised.value).startswith(f"AgentWrite: {message}")
    with pytest.raises(AgentWriteError, match="field 'top_p'"):
        AgentWrite.preset("small", CLIENT, top_p=-1)


def test_presets_keep_their_values_and_the_defaults_are_lw() -> None:
    assert AgentWriteOptions().model_dump() == LW
    assert AgentWrite(CLIENT).model_dump(include=set(LW)) == LW
    for name, settings in PRESETS.items():
        options = AgentWriteOptions(**settings).model_dump()
        assert options == {**LW, **settings}, name
    small = AgentWrite.preset("small", CLIENT)
    assert (small.max_section_words, small.tokens_per_word, small.context_sections) == (150, 1.5, 0)


def test_none_turns_an_optional_setting_off() -> None:
    agent = AgentWrite(CLIENT, top_p="none", repetition_limit="null", max_section_tokens=None)
    assert (agent.top_p, agent.repetition_limit, agent.max_section_tokens) == (None, None, None)


def test_cli_reads_options_from_config_then_set_then_flags(tmp_path: Path, scripted: SimpleNamespace) -> None:
    write_jsonl(tmp_path / "in.jsonl", scripted.instructions(1))
    config = tmp_path / "agent.toml"
    config.write_text("temperature = 0.9\ntop_p = 0.5\nplan_max_tokens = 700\n")
    with ScriptedServer(scripted.reply) as server:
        common = ["run", "--in", str(tmp_path / "in.jsonl"), "--base-url", server.base_url, "--model", "s", "-q"]
        result = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "d.jsonl"), "--config", str(config),
                                          "--set", "top_p=none", "--set", "tokens_per_word=1.0",
                                          "--max-section-tokens", "100"])  # fmt: skip
    assert result.exit_code == 0, result.output
    plan, *sections = server.calls
    assert plan["max_tokens"] == 700 and all(c["temperature"] == 0.9 and "top_p" not in c for c in server.calls)
    assert [c["max_tokens"] for c in sections] == [100] * scripted.steps  # 100 words x 1.0 + 32, capped by the flag


def test_cli_bad_options_are_one_line_naming_the_file_or_set(tmp_path: Path, scripted: SimpleNamespace) -> None:
    write_jsonl(tmp_path / "in.jsonl", scripted.instructions(1))
    args = ["run", "--in", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "o.jsonl"), "--base-url",
            "http://127.0.0.1:9/v1", "--model", "m"]  # fmt: skip
    config = tmp_path / "agent.toml"
    config.write_text("tempreature = 0.9\n")
    for extra, message in (
        (["--config", str(config)], f"{config}: field 'tempreature': unknown key"),
        (["--set", "top_p=2"], "--set top_p: field 'top_p': Input should be less than or equal to 1 (got 2)"),
        (["--config", str(tmp_path / "missing.toml")], "missing.toml: config file not found"),
    ):
        result = CliRunner().invoke(app, [*args, *extra])
        assert result.exit_code == 1 and message in result.stderr and "Traceback" not in result.output, extra
    assert not (tmp_path / "o.jsonl").exists()


def test_help_lists_every_option_with_its_default_and_description() -> None:
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    for name, field in AgentWriteOptions.model_fields.items():
        assert f"{name} (default " in result.output and (field.description or "")[:40] in result.output, name
