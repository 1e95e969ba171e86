"""``python -m lw_train`` (e.g. under ``accelerate launch -m lw_train sft --config ...``) runs the ``lw-train`` CLI."""

from lw_train.cli import app

if __name__ == "__main__":
    app()
