"""Every ``lw`` / ``lw-*`` command line follows one convention (lw_core.cli): read from the installed typer apps.

``--version``, help when run bare (exit 2), no local variables in tracebacks, every command behind ``user_errors``
(one red line and exit 1 for user errors, and ``--verbose``), API keys only through ``--api-key-env NAME`` /
``--api-key-file FILE`` (never an option value: a command line is visible to every local user), one name for
JSON-schema output, one for where results go (``--out``, ``-o``), and one grammar for ``KEY=VALUE`` options.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterator
from importlib.metadata import entry_points, version
from typing import Any

import pytest
import typer
from typer.models import OptionInfo
from typer.testing import CliRunner

SCRIPTS = {e.name: e for e in entry_points(group="console_scripts") if e.value.startswith("lw_")}
runner = CliRunner()


def _app(script: str) -> typer.Typer:
    app = SCRIPTS[script].load()
    assert isinstance(app, typer.Typer)
    return app


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command under a (typer) click group, with its path; a group whose callback runs alone counts too."""
    subcommands = getattr(command, "commands", None)  # typer's groups are not click.Group (it vendors click)
    if subcommands is None or getattr(command, "invoke_without_command", False):
        yield path, command
    for name, sub in (subcommands or {}).items():
        yield from _commands(sub, (*path, name))


def _callbacks(app: typer.Typer) -> Iterator[tuple[str, Any]]:
    """Every function a typer app runs for a command: commands, and callbacks that run without one."""
    for info in app.registered_commands:
        yield info.name or getattr(info.callback, "__name__", "?"), info.callback
    for group in app.registered_groups:
        assert group.typer_instance is not None
        callback = group.typer_instance.registered_callback
        if callback is not None and callback.invoke_without_command:
            yield f"{group.name} (callback)", callback.callback
        yield from _callbacks(group.typer_instance)


def test_every_lw_package_installs_its_command() -> None:
    assert set(SCRIPTS) == {"lw", "lw-agentwrite", "lw-bench", "lw-data", "lw-serve", "lw-train"}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_version_help_and_tracebacks(script: str) -> None:
    app = _app(script)
    distribution = "lw-reproduce" if script == "lw" else script
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.splitlines()[0] == f"{distribution} {version(distribution)}"
    bare = runner.invoke(app, [])
    assert bare.exit_code == 2 and "Usage:" in bare.output  # help, as a usage error
    assert app.pretty_exceptions_show_locals is False  # typer's default would print an API key held in a local


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_command_turns_user_errors_into_one_red_line(script: str) -> None:
    unwrapped = [name for name, callback in _callbacks(_app(script)) if not _is_user_errors(callback)]
    assert unwrapped == [], f"{script}: decorate these with @lw_core.cli.user_errors"


def _is_user_errors(callback: Any) -> bool:
    """Whether ``callback`` is a ``user_errors`` wrapper (``functools.wraps`` copies names, not the code)."""
    from lw_core.cli import user_errors

    return getattr(callback, "__code__", None) is user_errors(_is_user_errors).__code__


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_api_keys_and_json_schema_have_one_spelling(script: str) -> None:
    for path, command in _commands(typer.main.get_command(_app(script))):
        options = {name: param for param in command.params for name in (*param.opts, *param.secondary_opts)}
        where = f"{script} {' '.join(path)}"
        keyish = {name for name in options if any(word in name for word in ("key", "secret", "password"))}
        assert keyish <= {"--api-key-env", "--api-key-file"}, f"{where}: a secret must not be an option value"
        assert not {name for name in options if "json" in name} - {"--json-schema", "--no-json-schema", "--json"}, where
        if "--base-url" in options:  # a client: it can authenticate, by variable or file
            assert {"--api-key-env", "--api-key-file"} <= set(options), where
            assert options["--api-key-env"].default == "OPENAI_API_KEY", where
        if path[-1:] == ("up",):  # the server side: its own variable, so an exported OpenAI key is never reused
            assert options["--api-key-env"].default == "LW_SERVE_API_KEY", where


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_a_key_on_the_command_line_is_refused(script: str) -> None:
    for path, command in _commands(typer.main.get_command(_app(script))):
        if any("--api-key-env" in param.opts for param in command.params):
            result = runner.invoke(_app(script), [*path, "--api-key", "sk-on-argv"])
            assert result.exit_code == 2 and "No such option" in result.output, (path, result.output)
            assert "sk-on-argv" not in result.output


def test_every_command_is_found() -> None:
    """The walk above reaches every command (typer's groups are not ``click.Group``: an isinstance test found none)."""
    found = {" ".join(path) for path, _ in _commands(typer.main.get_command(_app("lw")))}
    assert {"bench predict", "data build-sft", "train sft", "serve export-gguf", "reproduce", "reproduce fork"} <= found
    assert len(found) >= 25


#: Other names people give "where results go"; lw has one, ``--out`` (``-o``).
OUTPUT_SPELLINGS = {
    "--output", "--out-dir", "--output-dir", "--outdir", "--out-file", "--output-file", "--output-path",
    "--out-path", "--dest", "--destination", "--save-to", "--json-out", "--write-to",
}  # fmt: skip


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_where_results_go_has_one_spelling(script: str) -> None:
    for path, command in _commands(typer.main.get_command(_app(script))):
        where = f"{script} {' '.join(path)}"
        for param in command.params:
            names = {*param.opts, *param.secondary_opts}
            assert not names & OUTPUT_SPELLINGS, f"{where}: {sorted(names & OUTPUT_SPELLINGS)}: use --out (-o)"
            if "-o" in names or "--out" in names:
                assert names == {"--out", "-o"}, f"{where}: --out's one spelling is --out, -o ({sorted(names)})"
            if "--json" in names:  # a switch to print JSON; a file to write is --out (the old --json FILE: hidden)
                assert param.is_flag or param.hidden, f"{where}: --json FILE is --out FILE"


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_key_value_options_use_the_shared_grammar(script: str) -> None:
    """``--set`` (and any KEY=VALUE option) parses with lw_core.cli.assignment: TOML values, one grammar."""
    from lw_core.cli import assignment

    seen = 0
    for name, callback in _callbacks(_app(script)):
        for parameter in inspect.signature(callback, eval_str=True).parameters.values():
            infos = [m for m in typing.get_args(parameter.annotation)[1:] if isinstance(m, OptionInfo)]
            infos += [parameter.default] if isinstance(parameter.default, OptionInfo) else []
            for info in infos:
                decls = set(info.param_decls or ())
                if "--set" in decls or info.metavar == "KEY=VALUE" or parameter.name in ("set_", "assignments"):
                    seen += 1
                    assert info.parser is assignment, (
                        f"{script} {name}: {sorted(decls)} must use lw_core.cli.Assignments"
                    )
    if script in ("lw", "lw-train", "lw-agentwrite"):
        assert seen, f"{script}: no --set found: the walk is broken"


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_command_takes_verbose(script: str) -> None:
    for path, command in _commands(typer.main.get_command(_app(script))):
        names = {name for param in command.params for name in param.opts}
        assert {"--verbose", "-v"} <= names, f"{script} {' '.join(path)}: no --verbose (wrap it in user_errors)"
