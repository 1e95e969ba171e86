"""The `lw-train` command line."""

import typer

app = typer.Typer(name="lw-train", no_args_is_help=True, help="lw-train: part of the lw LongWriter toolkit.")


@app.callback()
def main() -> None:
    """lw-train commands."""
