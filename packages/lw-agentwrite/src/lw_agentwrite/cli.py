"""The `lw-agentwrite` command line."""

import typer

app = typer.Typer(name="lw-agentwrite", no_args_is_help=True, help="lw-agentwrite: part of the lw LongWriter toolkit.")


@app.callback()
def main() -> None:
    """lw-agentwrite commands."""
