"""The `lw-bench` command line."""

import typer

app = typer.Typer(name="lw-bench", no_args_is_help=True, help="lw-bench: part of the lw LongWriter toolkit.")


@app.callback()
def main() -> None:
    """lw-bench commands."""
