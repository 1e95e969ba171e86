"""MkDocs hook: ``<!-- cli-reference: lw-bench -->`` (or ``lw reproduce``) becomes the reference of that command line.

Read from the installed typer app (the ``console_scripts`` entry point), so the reference is the CLI as it is: every
command with its help and a table of its arguments and options. Importing a CLI module loads no torch (a rule of
the packages), so this stays fast.
"""

from __future__ import annotations

import enum
import re
from importlib.metadata import entry_points
from typing import Any

from mkdocs.exceptions import PluginError

_MARK = re.compile(r"^<!-- cli-reference: ([\w -]+?) -->$", re.MULTILINE)


def _command(words: list[str]) -> Any:
    import typer

    apps = {e.name: e for e in entry_points(group="console_scripts")}
    if words[0] not in apps:
        raise PluginError(f"cli-reference: no installed command {words[0]!r}")
    command: Any = typer.main.get_command(apps[words[0]].load())
    for word in words[1:]:
        command = command.commands[word]
    return command


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(param: Any) -> str:
    value = param.default
    if param.required or value is None or callable(value) or value in ("", [], ()):
        return ""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        if param.secondary_opts:
            return f"`{param.opts[0] if value else param.secondary_opts[0]}`"
        return "on" if value else ""
    if isinstance(value, list | tuple):
        value = ",".join(map(str, value))
    return f"`{value}`"


def _param_row(param: Any) -> str | None:
    if param.hidden or param.name in ("install_completion", "show_completion"):
        return None
    names = [*param.opts, *param.secondary_opts]
    if not names[0].startswith("-"):
        shown = f"`{param.name.upper()}`" + ("" if param.required else " (optional)")
        if param.nargs < 0:
            shown += " …"
    else:
        shown = ", ".join(f"`{name}`" for name in names)
        if param.required:
            shown += " (required)"
    help_text = _cell(param.help or "")
    if param.envvar:
        help_text += f" (environment: `{param.envvar}`)"
    return f"| {shown} | {_default(param)} | {help_text} |"


def _section(words: list[str], command: Any, level: int) -> list[str]:
    lines = [f"{'#' * level} `{' '.join(words)}`", "", (command.help or "").strip(), ""]
    rows = [row for row in map(_param_row, command.params) if row]
    if rows:
        lines += ["| argument / option | default | |", "| --- | --- | --- |", *rows, ""]
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            lines += _section([*words, name], sub, level + 1)
    return lines


def cli_reference(words: list[str], level: int = 3) -> str:
    """The Markdown reference of the command ``words`` (e.g. ``["lw-bench"]``) and its subcommands."""
    command = _command(words)
    if hasattr(command, "commands") and not getattr(command, "invoke_without_command", False):
        intro = [(command.help or "").strip(), ""]
        body = [line for name, sub in command.commands.items() for line in _section([*words, name], sub, level)]
        return "\n".join(intro + body)
    return "\n".join(_section(words, command, level))


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return _MARK.sub(lambda match: cli_reference(match.group(1).split()), markdown)
