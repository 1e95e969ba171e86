"""lw_core.cli: the conventions every lw command line shares (errors, exit codes, --version, API keys, options)."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Annotated

import pytest
import typer
from lw_core import LWError
from lw_core.cli import (
    Assignments,
    api_key,
    chat_client,
    configure_logging,
    new_app,
    progress_bar,
    user_errors,
    validated,
)
from lw_core.config import Assignment
from pydantic import BaseModel, Field, ValidationError
from rich.console import Console
from typer.testing import CliRunner

runner = CliRunner()


def _app() -> typer.Typer:
    """An app whose command fails the way it is told to."""
    app = new_app("lw-core", "A test app.")

    @app.command()
    @user_errors
    def fail(how: Annotated[str, typer.Argument()], path: Path = Path("absent.jsonl")) -> None:
        """Fail as asked."""
        if how == "lw":
            raise LWError("tasks.jsonl:3: field 'length': expected a number (fix the line, then run again)")
        if how == "missing":
            path.read_text()
        if how == "bug":
            raise KeyError("steps")
        if how == "validation":
            _Range.model_validate({"low": -1})
        if how == "oserror":
            raise ConnectionResetError("reset by peer")  # an OSError naming no file: not the user's input
        print("ok")

    @app.command()
    def other() -> None:
        """A second command, so the app is a group."""

    return app


class _Range(BaseModel):
    low: int = Field(0, ge=0)
    high_water: float = Field(1.0, le=1)


def test_a_user_error_is_one_red_line_and_exit_1() -> None:
    result = runner.invoke(_app(), ["fail", "lw"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: tasks.jsonl:3: field 'length': expected a number (fix the line, then run again)"
    ]
    assert result.stdout == "" and "Traceback" not in result.output


def test_a_path_the_file_system_refuses_is_a_user_error_naming_it(tmp_path: Path) -> None:
    result = runner.invoke(_app(), ["fail", "missing", "--path", str(tmp_path / "absent.jsonl")])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'absent.jsonl'}: No such file or directory"


@pytest.mark.parametrize(("how", "kind"), [("bug", KeyError), ("validation", ValidationError), ("oserror", OSError)])
def test_anything_else_is_a_bug_and_keeps_its_traceback(how: str, kind: type[Exception]) -> None:
    result = runner.invoke(_app(), ["fail", how])
    assert isinstance(result.exception, kind), result.output  # raised through, not turned into a red line
    assert "error:" not in result.output


def test_usage_errors_exit_2_and_a_bare_command_shows_help() -> None:
    assert runner.invoke(_app(), ["fail", "lw", "--bogus"]).exit_code == 2
    bare = runner.invoke(_app(), [])
    assert bare.exit_code == 2 and "Usage:" in bare.output and "fail" in bare.output


def test_version_names_each_distribution() -> None:
    from importlib.metadata import version

    result = runner.invoke(_app(), ["--version"])
    assert result.exit_code == 0 and result.output == f"lw-core {version('lw-core')}\n"
    both = runner.invoke(new_app("lw", "umbrella", "lw-core", "no-such-dist"), ["--version"])
    assert both.output.splitlines() == [f"lw-core {version('lw-core')}", "no-such-dist (not installed)"]


def test_tracebacks_never_show_local_variables() -> None:
    """typer's default prints every frame's locals, which would print an API key held in one."""
    assert new_app("x", "y").pretty_exceptions_show_locals is False


def test_api_key_from_a_file_first_then_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    key_file = tmp_path / "key"
    key_file.write_text("# the team's key\n\n  sk-file  \nsk-second\n")
    assert api_key("OPENAI_API_KEY", key_file) == "sk-file"
    assert api_key("OPENAI_API_KEY", None) == "sk-env"
    assert api_key("", None) is None  # an empty name: no key
    monkeypatch.delenv("OPENAI_API_KEY")
    assert api_key("OPENAI_API_KEY", None) is None  # the default variable unset: a local server needs none
    monkeypatch.setenv("LW_SERVE_API_KEY", "")
    assert api_key("LW_SERVE_API_KEY", None, default_env="LW_SERVE_API_KEY") is None


def test_api_key_mistakes_are_user_errors_that_never_show_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(LWError, match=r"--api-key-env MY_KEY: the variable is not set"):
        api_key("MY_KEY", None)
    empty = tmp_path / "empty"
    empty.write_text("# nothing but a comment\n")
    with pytest.raises(LWError, match="holds no key"):
        api_key("OPENAI_API_KEY", empty)
    with pytest.raises(LWError, match=r"absent: No such file or directory"):
        api_key("OPENAI_API_KEY", tmp_path / "absent")


def test_chat_client_carries_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LW_TEST_KEY", "sk-secret")
    client = chat_client("http://127.0.0.1:9/v1", "m", api_key_env="LW_TEST_KEY", api_key_file=None,
                         json_schema=True, concurrency=3, extra_body={"repeat_penalty": 1.15})  # fmt: skip
    assert client.api_key == "sk-secret" and "sk-secret" not in repr(client)
    assert client.capabilities.json_schema and client.concurrency == 3 == client.capabilities.concurrency
    assert client.extra_body == {"repeat_penalty": 1.15}


def test_validated_turns_a_refused_value_into_a_usage_error_naming_the_option() -> None:
    assert validated(_Range, {"low": 2}).low == 2
    with pytest.raises(typer.BadParameter) as info:
        validated(_Range, {"high_water": 2.0})
    assert info.value.param_hint == "--high-water" and "less than or equal to 1" in info.value.message
    with pytest.raises(typer.BadParameter) as info:
        validated(_Range, {"low": -1}, {"low": "--min"})
    assert info.value.param_hint == "--min"


def test_progress_bar_draws_on_the_given_console_with_its_detail() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with progress_bar(console, detail=True) as bar:
        task = bar.add_task("judge", total=4, detail="12 words")
        bar.advance(task, 4)
    assert "judge" in out.getvalue() and "4/4" in out.getvalue() and "12 words" in out.getvalue()
    quiet = io.StringIO()
    with progress_bar(Console(file=quiet, force_terminal=True), disable=True) as bar:
        bar.add_task("judge", total=1)
    assert quiet.getvalue() == ""


def _app_with_out() -> typer.Typer:
    """An app with lw's ``--out``, ``--set`` and logging, and a command that already has an ``--output``."""
    app = new_app("lw-core", "A test app.")

    @app.command()
    @user_errors
    def write(
        out: Annotated[Path, typer.Option("--out", "-o", help="where it goes")],
        set_: Assignments = None,
    ) -> None:
        logging.getLogger("lw_core.example").info("writing %s", out)
        logging.getLogger("lw_core.example").debug("debug detail")
        logging.getLogger("thirdparty").info("third-party chatter")
        print(f"out={out} set={[tuple(a) for a in set_ or []]}")

    @app.command()
    @user_errors
    def legacy(output: Annotated[Path, typer.Option("--output")]) -> None:
        print(f"output={output}")

    return app


@pytest.mark.parametrize("spelling", ["--output", "--out-dir", "--output-dir"])
def test_old_output_spellings_still_work_with_a_warning_on_stderr(spelling: str) -> None:
    for args in ([spelling, "a.jsonl"], [f"{spelling}=a.jsonl"]):
        result = runner.invoke(_app_with_out(), ["write", *args])
        assert result.exit_code == 0, result.output
        assert result.stdout == "out=a.jsonl set=[]\n"
        assert f"{spelling} is deprecated, use --out" in result.stderr
    for args in (["--out", "a.jsonl"], ["-o", "a.jsonl"]):
        result = runner.invoke(_app_with_out(), ["write", *args])
        assert result.stdout == "out=a.jsonl set=[]\n" and result.stderr == ""
    # a command without --out keeps its own option of that name, untouched and without a warning
    result = runner.invoke(_app_with_out(), ["legacy", "--output", "b"])
    assert result.stdout == "output=b\n" and result.stderr == ""


def test_set_uses_the_shared_grammar_and_a_bad_pair_is_a_usage_error() -> None:
    result = runner.invoke(_app_with_out(), ["write", "-o", "x", "--set", "a.b=[1, 2]", "--set", "name=cosine"])
    assert result.stdout == "out=x set=[('a.b', [1, 2]), ('name', 'cosine')]\n"
    bad = runner.invoke(_app_with_out(), ["write", "-o", "x", "--set", "novalue"])
    assert bad.exit_code == 2 and "expected KEY=VALUE" in bad.output
    assert Assignment("k", 1) == ("k", 1)


def test_verbose_and_lw_log_set_the_level_of_lw_logs_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    try:
        quiet = runner.invoke(_app_with_out(), ["write", "-o", "x"])
        assert quiet.stdout == "out=x set=[]\n" and quiet.stderr == ""  # warnings only by default
        verbose = runner.invoke(_app_with_out(), ["write", "-o", "x", "--verbose"])
        assert "writing x" in verbose.stderr and "debug detail" in verbose.stderr
        assert "third-party chatter" in verbose.stderr and "writing" not in verbose.stdout
        monkeypatch.setenv("LW_LOG", "info")
        info = runner.invoke(_app_with_out(), ["write", "-o", "x"])
        assert "writing x" in info.stderr and "debug detail" not in info.stderr
        assert "third-party chatter" not in info.stderr  # other libraries stay at warning
        monkeypatch.setenv("LW_LOG", "loud")
        bad = runner.invoke(_app_with_out(), ["write", "-o", "x"])
        assert bad.exit_code == 1 and bad.stderr.strip() == (
            "error: LW_LOG='loud': expected one of debug, info, warning, error"
        )
        handlers = [h for h in root.handlers if h not in before[1]]
        assert len(handlers) == 1  # each call replaces its handler rather than adding one
    finally:
        for handler in [h for h in root.handlers if h not in before[1]]:
            root.removeHandler(handler)
        root.setLevel(before[0])


def test_configure_logging_returns_the_level_and_touches_no_logger_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LW_LOG", raising=False)
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    try:
        assert configure_logging() == logging.WARNING
        assert configure_logging(default=logging.INFO) == logging.INFO
        assert configure_logging(verbose=True, default=logging.INFO) == logging.DEBUG
        assert logging.getLogger("lw_train").level == logging.NOTSET  # caplog and embedding apps keep control
    finally:
        for handler in [h for h in root.handlers if h not in before[1]]:
            root.removeHandler(handler)
        root.setLevel(before[0])
