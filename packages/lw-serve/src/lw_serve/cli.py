"""The `lw-serve` command line."""

import typer

app = typer.Typer(name="lw-serve", no_args_is_help=True, help="lw-serve: part of the lw LongWriter toolkit.")


@app.callback()
def main() -> None:
    """lw-serve commands."""
