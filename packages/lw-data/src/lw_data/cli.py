"""The `lw-data` command line."""

import typer

app = typer.Typer(name="lw-data", no_args_is_help=True, help="lw-data: part of the lw LongWriter toolkit.")


@app.callback()
def main() -> None:
    """lw-data commands."""
