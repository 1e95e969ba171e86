"""The conventions every ``lw-*`` command line shares, written once.

- ``--version`` and help without arguments on every command: :func:`new_app`.
- A user error (an :class:`~lw_core.LWError`, or the file system refusing a path) is one red line and exit code 1;
  anything else is a bug and keeps its traceback; usage errors are exit code 2 (click's): :func:`user_errors`.
- API keys come from an environment variable or a file, never an option value (a command line is visible to every
  local user): :data:`ApiKeyEnv`, :data:`ApiKeyFile`, :func:`api_key`. Clients read ``$OPENAI_API_KEY`` unless told
  another variable, as the ``openai`` package does; ``lw-serve up`` requires the key in ``$LW_SERVE_API_KEY`` if set
  (its own variable, so an OpenAI key exported for other tools never becomes a local server's key by accident).
- ``--json-schema`` says the server enforces JSON-schema ``response_format``: :data:`JsonSchema`.
- Long work shows one kind of progress bar, on stderr: :func:`progress_bar`.
- Where results go is ``--out`` (``-o``) in every command; the old spellings ``--output``, ``--out-dir`` and
  ``--output-dir`` still work for one release, with a deprecation warning on stderr: :class:`App`.
- Logs go to stderr, at the level ``--verbose`` (``-v``, on every command) or ``$LW_LOG`` asks for:
  :func:`configure_logging`, called by :func:`user_errors`; libraries only log, they never configure handlers.
- ``--set KEY=VALUE`` reads values with lw's one grammar (:mod:`lw_core.config`): :data:`Assignments`; a command's
  ``--help`` lists the keys it takes, each with its default and description: :func:`config_keys_help`.

This module needs typer and rich, lw-core's ``cli`` extra (``pip install 'lw-core[cli]'``), which every lw package
with a command line depends on; nothing else in lw-core imports it, so the library itself stays light.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

try:
    import typer
    from rich.console import Console
    from rich.logging import RichHandler
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
except ImportError as exc:  # tests/e2e/test_packaging.py: lw-core installed alone
    raise ImportError(f"lw_core.cli needs typer and rich: pip install 'lw-core[cli]' ({exc})") from exc

from pydantic import BaseModel, ValidationError
from typer.models import CommandFunctionType

from lw_core.client import Capabilities, OpenAIChatClient
from lw_core.config import Assignment, ConfigError, describe_fields, parse_assignment
from lw_core.errors import LWError

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)

CLIENT_KEY_ENV = "OPENAI_API_KEY"
SERVER_KEY_ENV = "LW_SERVE_API_KEY"

BaseUrl = Annotated[str, typer.Option("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")]
Model = Annotated[str, typer.Option("--model", help="Model name as the server knows it.")]
ApiKeyEnv = Annotated[
    str,
    typer.Option(
        "--api-key-env",
        metavar="NAME",
        help="Environment variable holding the API key (keys are never taken on the command line, nor printed).",
    ),
]
ApiKeyFile = Annotated[
    Path | None,
    typer.Option(
        "--api-key-file",
        metavar="FILE",
        dir_okay=False,
        help="File holding the API key (its first line that is not a # comment); overrides --api-key-env.",
    ),
]
JsonSchema = Annotated[
    bool,
    typer.Option(
        "--json-schema/--no-json-schema",
        help="The server enforces JSON-schema response_format (SGLang, vLLM, llama.cpp, OpenAI): ask for it.",
    ),
]
Concurrency = Annotated[int, typer.Option("--concurrency", min=1, help="Requests in flight at once.")]

#: Old spellings of ``--out``, accepted until the next release with a warning on stderr (:class:`App`).
DEPRECATED_OUT = ("--output", "--out-dir", "--output-dir")
#: The variable that sets the log level of every lw command (``debug``, ``info``, ``warning``, ``error``).
LOG_ENV = "LW_LOG"
#: The loggers lw's packages log to (``logging.getLogger(__name__)`` in each).
LW_LOGGERS = ("lw_core", "lw_agentwrite", "lw_data", "lw_train", "lw_bench", "lw_serve", "lw_reproduce")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def assignment(text: str) -> Assignment:
    """The parser of every ``KEY=VALUE`` option (``--set``, ``--sampling``): :func:`lw_core.config.parse_assignment`,
    a malformed pair being a usage error (exit 2)."""
    if isinstance(text, Assignment):  # typer may hand a parsed value back (a default)
        return text
    try:
        return parse_assignment(text)
    except ConfigError:
        raise typer.BadParameter(f"{text!r}: expected KEY=VALUE, e.g. max_steps=2") from None


Assignments = Annotated[
    list[Assignment] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        parser=assignment,
        help="Override a setting (repeatable); a dotted key reaches a nested table (lora.r=8). The value is TOML "
        "(2, 1e-5, true, [1, 2], {a = 1}); a bare word or a path is text; KEY= removes the key (its default applies).",
    ),
]
Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help=f"Debug logs on stderr (or set ${LOG_ENV} to debug, info, warning).")
]


class App(typer.Typer):
    """A typer app whose commands take ``--out`` under its old spellings too, with a deprecation warning on stderr.

    ``--output``, ``--out-dir`` and ``--output-dir`` become ``--out`` in a command that has ``--out`` and no option
    of that old name (one release of grace; ``docs/architecture.md``, conventions).
    """

    def command(
        self, name: str | None = None, *, cls: type[typer.core.TyperCommand] | None = None, **kwargs: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        return super().command(name, cls=cls or _Command, **kwargs)


class _Command(typer.core.TyperCommand):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        spellings = {name for param in self.params for name in (*param.opts, *param.secondary_opts)}
        if "--out" in spellings:
            args = [self._renamed(ctx, arg, spellings) for arg in args]
        result: list[str] = super().parse_args(ctx, args)
        return result

    @staticmethod
    def _renamed(ctx: Any, arg: str, spellings: set[str]) -> str:
        name, sep, value = arg.partition("=")
        if name not in DEPRECATED_OUT or name in spellings:
            return arg
        Console(stderr=True).print(
            f"[yellow]warning:[/yellow] {escape(ctx.command_path)}: {name} is deprecated, use --out "
            f"(the old spelling goes in the next release)",
            highlight=False,
            soft_wrap=True,
        )
        return f"--out{sep}{value}"


def new_app(name: str, help: str, *distributions: str) -> typer.Typer:
    """A typer app with lw's conventions: help when run bare, ``--version`` (of ``distributions``, default ``name``).

    Tracebacks of bugs never show local variables: they may hold an API key.

    >>> from typer.testing import CliRunner
    >>> app = new_app("lw-core", "An example.")
    >>> @app.command()
    ... def hello() -> None:
    ...     print("hello")
    >>> result = CliRunner().invoke(app, ["--version"])
    >>> result.exit_code, result.output.split()[0]
    (0, 'lw-core')
    """
    shown = distributions or (name,)

    def show_version(value: bool) -> None:
        if value:
            for distribution in shown:
                typer.echo(f"{distribution} {_version(distribution)}")
            raise typer.Exit()

    app = App(name=name, help=help, no_args_is_help=True, pretty_exceptions_show_locals=False)

    version_option = typer.Option(False, "--version", callback=show_version, is_eager=True, help="Print the version.")

    @app.callback()
    def _options(version: bool = version_option) -> None:  # the option acts in its callback
        pass

    return app


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "(not installed)"


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Run a command so that a user error is one red line on stderr and exit code 1, never a traceback.

    User errors are :class:`~lw_core.LWError` (bad files, records, options, servers: lw raises them on purpose, with
    the place and the fix) and an ``OSError`` about a named path (a missing input, an unwritable output). Anything
    else is a bug and keeps its traceback.

    The command also gains ``--verbose`` (:data:`Verbose`) and sets up logging (:func:`configure_logging`) before it
    runs, unless it takes a ``verbose`` parameter of its own (then it calls :func:`configure_logging` itself).
    """
    adds_verbose = _add_verbose(func)

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            if adds_verbose and "verbose" in kwargs:  # a command line's call (typer passes every option)
                configure_logging(bool(kwargs.pop("verbose")))
            return func(*args, **kwargs)
        except LWError as exc:
            message = str(exc)
        except OSError as exc:
            if exc.filename is None:
                raise
            message = f"{exc.filename}: {exc.strerror or exc}"
        Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)

    if adds_verbose:
        signature = inspect.signature(func, eval_str=True)
        verbose = inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Verbose)
        run.__signature__ = signature.replace(parameters=[*signature.parameters.values(), verbose])  # type: ignore[attr-defined]
    return run


def _add_verbose(func: Callable[..., Any]) -> bool:
    """Whether :func:`user_errors` gives ``func`` the ``--verbose`` option: not when it has a ``verbose`` parameter,
    takes ``**kwargs``, or has annotations that cannot be resolved from its module (a function local to a test)."""
    try:
        parameters = inspect.signature(func, eval_str=True).parameters
    except (NameError, TypeError, ValueError):
        return False
    return "verbose" not in parameters and all(p.kind is not p.VAR_KEYWORD for p in parameters.values())


def log_level(verbose: bool = False, *, default: int = logging.WARNING) -> int:
    """The level of lw's logs: ``--verbose``: debug; else ``$LW_LOG`` (debug, info, warning, error); else ``default``.

    >>> import os
    >>> os.environ["LW_LOG"] = "info"
    >>> log_level() == logging.INFO, log_level(verbose=True) == logging.DEBUG
    (True, True)
    >>> os.environ["LW_LOG"] = "loud"
    >>> log_level()
    Traceback (most recent call last):
    lw_core.errors.LWError: LW_LOG='loud': expected one of debug, info, warning, error
    >>> del os.environ["LW_LOG"]
    >>> log_level() == logging.WARNING
    True
    """
    if verbose:
        return logging.DEBUG
    configured = os.environ.get(LOG_ENV, "").strip().lower()
    if not configured:
        return default
    if configured not in _LEVELS:
        raise LWError(f"{LOG_ENV}={configured!r}: expected one of {', '.join(_LEVELS)}")
    return _LEVELS[configured]


def configure_logging(verbose: bool = False, *, default: int = logging.WARNING) -> int:
    """Send log records to stderr at :func:`log_level`'s level; returns it.

    The level applies to lw's loggers (:data:`LW_LOGGERS`); other libraries' records show from warning up (from
    info up with ``verbose``). One handler on the root logger, replaced by a later call; no logger's own level is
    touched. Commands call this (through :func:`user_errors`); libraries never configure logging.
    """
    level = log_level(verbose, default=default)
    others = logging.INFO if verbose else logging.WARNING
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CommandLineHandler)]:
        root.removeHandler(old)
    handler = _CommandLineHandler(console=Console(stderr=True), show_path=False, level=level)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(lambda record: record.name.split(".")[0] in LW_LOGGERS or record.levelno >= others)
    root.addHandler(handler)
    root.setLevel(min(level, others))
    return level


class _CommandLineHandler(RichHandler):
    """The handler :func:`configure_logging` installs (so a second call replaces it rather than adding one)."""


def api_key(env: str, file: Path | None, *, default_env: str = CLIENT_KEY_ENV) -> str | None:
    """The API key from ``file`` (its first line that is not a ``#`` comment), else from ``$env``, else None.

    An unset variable means no key when it is ``default_env`` (local servers need none), and is an error when the
    user named it (a misspelt name should not become a puzzling 401).

    >>> import os
    >>> os.environ["LW_EXAMPLE_KEY"] = "sk-example"
    >>> api_key("LW_EXAMPLE_KEY", None)
    'sk-example'
    >>> del os.environ["LW_EXAMPLE_KEY"]
    >>> api_key("LW_EXAMPLE_KEY", None)
    Traceback (most recent call last):
    lw_core.errors.LWError: --api-key-env LW_EXAMPLE_KEY: the variable is not set (export it, or use --api-key-file)
    """
    if file is not None:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise LWError(f"--api-key-file {file}: {exc.strerror or exc}") from None
        key = next((line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")), "")
        if not key:
            raise LWError(f"--api-key-file {file}: the file holds no key (the key on a line of its own; # comments)")
        return key
    if not env:
        return None
    value = os.environ.get(env)
    if value is None and env != default_env:
        raise LWError(f"--api-key-env {env}: the variable is not set (export it, or use --api-key-file)")
    return value or None


def chat_client(
    base_url: str,
    model: str,
    *,
    api_key_env: str,
    api_key_file: Path | None,
    json_schema: bool = False,
    concurrency: int = 8,
    extra_body: Mapping[str, Any] | None = None,
) -> OpenAIChatClient:
    """The :class:`~lw_core.OpenAIChatClient` a command's shared options describe."""
    return OpenAIChatClient(
        base_url=base_url,
        model=model,
        api_key=api_key(api_key_env, api_key_file),
        concurrency=concurrency,
        capabilities=Capabilities(json_schema=json_schema, concurrency=concurrency),
        extra_body=dict(extra_body or {}),
    )


def config_keys_help(model: type[BaseModel], separator: str = "\n\n") -> str:
    """Every key of a config model with its default and description, for a command's ``--help`` (rich markup escaped).

    >>> from pydantic import BaseModel, Field
    >>> class Run(BaseModel):
    ...     steps: int = Field(10, description="optimizer steps")
    ...     data: str = Field(description="training records")
    >>> config_keys_help(Run, "; ")
    'steps (default 10): optimizer steps; data (required): training records'
    """
    return separator.join(
        escape(f"{name} ({'' if default == 'required' else 'default '}{default}): {text}".rstrip(": "))
        for name, default, text in describe_fields(model)
    )


def validated(model: type[M], values: Mapping[str, Any], options: Mapping[str, str] | None = None) -> M:
    """``model`` validated from option values; a value it refuses is a usage error (exit 2) naming the option.

    ``options`` maps a field to its option where the names differ (default: ``--field-name``).
    """
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        option = (options or {}).get(field, "--" + field.replace("_", "-"))
        raise typer.BadParameter(error["msg"], param_hint=option) from None


def progress_bar(
    console: Console | None = None, *, detail: bool = False, transient: bool = False, disable: bool = False
) -> Progress:
    """The progress bar of long work: what, bar, done/total, (a ``detail`` field if asked,) elapsed, remaining.

    Drawn on stderr, so a command's stdout stays its result; ``disable`` serves a ``--quiet`` option. Use as
    ``with progress_bar() as bar:``, then ``task = bar.add_task("judge", total=n)`` and ``bar.advance(task)``.
    """
    columns: list[ProgressColumn] = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    if detail:
        columns.insert(3, TextColumn("{task.fields[detail]}"))
    return Progress(*columns, console=console or Console(stderr=True), transient=transient, disable=disable)
