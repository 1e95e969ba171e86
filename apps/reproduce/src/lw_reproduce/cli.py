"""The umbrella ``lw`` command: mounts every package's CLI (``lw bench ...``) plus ``lw reproduce``."""

import typer
from lw_agentwrite.cli import app as agentwrite_app
from lw_bench.cli import app as bench_app
from lw_data.cli import app as data_app
from lw_serve.cli import app as serve_app
from lw_train.cli import app as train_app

app = typer.Typer(name="lw", no_args_is_help=True, help="lw: the LongWriter toolkit.")
app.add_typer(agentwrite_app, name="agentwrite")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(bench_app, name="bench")
app.add_typer(serve_app, name="serve")
