"""Hugging Face folder → GGUF, so trained models run on llama.cpp like the base model.

Written with the ``gguf`` package's own pieces — its tensor-name map, :class:`gguf.GGUFWriter`,
:class:`gguf.SpecialVocab` (merges, special tokens, chat template) and its quantizers — not with a
copy of llama.cpp's ``convert_hf_to_gguf.py``, which must match the llama.cpp revision it came from.
Tensors are streamed one at a time (header first, then data), so memory stays at one tensor.

>>> sorted(ARCHITECTURES), OUTTYPES
(['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM'], ('f32', 'f16', 'bf16', 'q8_0'))
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lw_core import cache_dir
from lw_core.cache import locked

from lw_serve.errors import ConversionError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

OUTTYPES = ("f32", "f16", "bf16", "q8_0")
ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
"""HF architecture → llama.cpp architecture. Mistral's weights are Llama's (llama.cpp's own converter does the same)."""
ROPE_TYPES = ("default", "linear", "llama3")
EXPORT_VERSION = 1
"""Part of every cached export's key: bump it when the exporter's output changes, so old exports are redone."""

# tokenizer.json pre-tokenizer regexes, as llama.cpp's llama-vocab.cpp quotes them, → llama.cpp's pre-tokenizer name
_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"
_SPLIT_REGEXES = {
    _CONTRACTIONS + r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
    _CONTRACTIONS + r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
}
_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "chat_template.jinja", "chat_template.json",
)  # fmt: skip
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
_NEEDS = "exporting to GGUF needs gguf, torch and transformers: pip install 'lw-serve[export]'"

Progress = Callable[[int, int], None]
"""Called as ``progress(tensors_written, tensors_total)``."""


def export_gguf(
    hf_folder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    outtype: str = "f16",
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Write the model in ``hf_folder`` (weights, tokenizer, chat template) as one GGUF file at ``out``.

    ``outtype`` is ``f32`` (exact), ``f16``, ``bf16`` or ``q8_0``; norms and biases stay f32, as in
    llama.cpp's converter. Everything is checked before anything is written, the file is written
    beside ``out`` and renamed into place, so a failed or killed export leaves no partial file.
    An existing ``out`` is an error unless ``force``.
    """
    source, target = Path(hf_folder), Path(out)
    if outtype not in OUTTYPES:
        raise ConversionError(f"unknown outtype {outtype!r}: choose one of {', '.join(OUTTYPES)}")
    if target.exists() and not force:
        raise ConversionError(f"{target} already exists: choose another path, or overwrite it with --force")
    model = _read_model(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.chmod(0o644)  # mkstemp makes it private; a model file is for reading
        _write(model, tmp, outtype, progress)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("exported %s to %s (%s)", source, target, outtype)
    return target


def cached_export(hf_folder: str | os.PathLike[str], outtype: str = "f16", cache: Path | None = None) -> Path:
    """The GGUF export of ``hf_folder`` in ``$LW_HOME/gguf``, made once per folder content and ``outtype``.

    The key is a SHA-256 of the files the export reads (config, weights, tokenizer files) and the
    exporter's version, so a retrained folder at the same path gets a new export and an unchanged
    one is reused. Concurrent callers wait on a lock and then reuse the file.
    """
    source = Path(hf_folder).resolve()
    if outtype not in OUTTYPES:
        raise ConversionError(f"unknown outtype {outtype!r}: choose one of {', '.join(OUTTYPES)}")
    _json(source / "config.json", what="a Hugging Face model folder needs config.json")
    folder = cache or cache_dir("gguf")
    target = folder / f"{source.name}-{folder_digest(source)[:16]}.{outtype}.gguf"
    if target.is_file():
        return target
    with locked(folder / f".{target.name}.lock"):
        if not target.is_file():
            log.info("exporting %s to %s (once)", source, target)
            export_gguf(source, target, outtype)
    return target


def can_export(hf_folder: str | os.PathLike[str]) -> bool:
    """True for a local folder whose ``config.json`` names an architecture :func:`export_gguf` supports."""
    try:
        config = json.loads((Path(hf_folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    archs = config.get("architectures") if isinstance(config, dict) else None
    return isinstance(archs, list) and bool(archs) and archs[0] in ARCHITECTURES


def folder_digest(hf_folder: Path) -> str:
    """SHA-256 over the names and bytes of the files an export reads, and :data:`EXPORT_VERSION`."""
    files = [hf_folder / "config.json", *_weight_files(hf_folder)]
    files += [hf_folder / name for name in _TOKENIZER_FILES if (hf_folder / name).is_file()]
    digest = hashlib.sha256(f"lw-serve export v{EXPORT_VERSION}\n".encode())
    for path in files:
        digest.update(f"{path.name}\n{path.stat().st_size}\n".encode())
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def rotary_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotate-half rows of a Q/K projection → llama.cpp's interleaved rotary pairs, per head.

    HF rotates dimension ``i`` with ``i + d/2`` of each head; llama.cpp's Llama rope rotates
    neighbours ``2i, 2i+1``. So each head's two halves are zipped: rows ``[a0 a1 b0 b1]`` →
    ``[a0 b0 a1 b1]``.

    >>> import numpy as np
    >>> rotary_permute(np.arange(8), n_head=2).tolist()
    [0, 2, 1, 3, 4, 6, 5, 7]
    """
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


# -- reading the folder -------------------------------------------------------------------------


@dataclass
class _Model:
    folder: Path
    config: dict[str, Any]
    arch: str
    weights: list[Path]
    tokenizer: dict[str, Any]
    hparams: dict[str, Any] = field(default_factory=dict)


def _read_model(folder: Path) -> _Model:
    """Check everything an export needs, before anything is written."""
    if not folder.is_dir():
        raise ConversionError(f"{folder} is not a folder: pass a Hugging Face model folder (config.json, weights)")
    config = _json(folder / "config.json", what="a Hugging Face model folder needs config.json")
    archs = config.get("architectures") or [f"model_type={config.get('model_type')!r}"]
    arch = ARCHITECTURES.get(archs[0])
    if arch is None:
        raise ConversionError(
            f"{folder / 'config.json'}: architecture {archs[0]!r} cannot be exported to GGUF here; "
            f"supported: {', '.join(ARCHITECTURES)}"
        )
    model = _Model(folder, config, arch, _weight_files(folder), _tokenizer_json(folder))
    model.hparams = _hparams(model)
    return model


def _json(path: Path, *, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConversionError(f"{path} is missing: {what}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConversionError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a JSON object")
    return data


def _weight_files(folder: Path) -> list[Path]:
    for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                               ("pytorch_model.bin.index.json", "pytorch_model.bin")):  # fmt: skip
        index = folder / index_name
        if index.is_file():
            weight_map = _json(index, what="").get("weight_map")
            if not isinstance(weight_map, dict):
                raise ConversionError(f"{index}: field 'weight_map' is missing")
            files = [folder / name for name in sorted(set(weight_map.values()))]
            if missing := [p.name for p in files if not p.is_file()]:
                raise ConversionError(f"{index}: field 'weight_map' names missing files: {', '.join(missing)}")
            return files
        if (folder / single).is_file():
            return [folder / single]
    raise ConversionError(
        f"{folder} has no weights (model.safetensors, model.safetensors.index.json or pytorch_model.bin): "
        "pass the folder written by save_pretrained"
    )


def _tokenizer_json(folder: Path) -> dict[str, Any]:
    path = folder / "tokenizer.json"
    if not path.is_file():
        others = [n for n in ("tokenizer.model", "vocab.json") if (folder / n).is_file()]
        hint = (
            f"it has {', '.join(others)} only: write the fast tokenizer with "
            "AutoTokenizer.from_pretrained(folder).save_pretrained(folder)"
            if others else "save the tokenizer with the model (tokenizer.save_pretrained(folder))"
        )  # fmt: skip
        raise ConversionError(f"{folder} has no tokenizer files (tokenizer.json): {hint}")
    return _json(path, what="")


def _hparams(model: _Model) -> dict[str, Any]:
    config, where = model.config, model.folder / "config.json"

    def need(key: str) -> Any:
        if key not in config:
            raise ConversionError(f"{where}: field {key!r} is missing")
        return config[key]

    n_head = int(need("num_attention_heads"))
    hidden = int(need("hidden_size"))
    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        supported = ", ".join(ROPE_TYPES)
        raise ConversionError(f"{where}: rope type {rope_type!r} cannot be exported; supported: {supported}")
    if config.get("sliding_window") and config.get("use_sliding_window", True):
        log.warning("%s: llama.cpp's %s architecture has no sliding window (%s tokens): outputs differ beyond it",
                    where, model.arch, config["sliding_window"])  # fmt: skip
    return {
        "n_layer": int(need("num_hidden_layers")),
        "n_embd": hidden,
        "n_ff": int(need("intermediate_size")),
        "n_head": n_head,
        "n_head_kv": int(config.get("num_key_value_heads") or n_head),
        "head_dim": int(config.get("head_dim") or hidden // n_head),
        "n_ctx": int(need("max_position_embeddings")),
        "n_vocab": int(need("vocab_size")),
        "eps": float(need("rms_norm_eps")),
        "rope_theta": float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
        "rope": rope | {"rope_type": rope_type},
        "tied": bool(config.get("tie_word_embeddings", False)),
    }


# -- writing ------------------------------------------------------------------------------------


def _write(model: _Model, path: Path, outtype: str, progress: Progress | None) -> None:
    try:
        import gguf
        import numpy as np
    except ImportError as exc:
        raise ConversionError(_NEEDS) from exc
    hp = model.hparams
    writer = gguf.GGUFWriter(path, model.arch)
    try:
        _add_hparams(writer, model, outtype)
        _add_vocab(writer, model)
        with _open_weights(model.weights) as weights:
            plan = _plan_tensors(model, weights)
            extra = _rope_freqs(hp)
            if extra is not None:
                plan.insert(0, ("rope_freqs.weight", "", extra.shape))
            for name, _, shape in plan:
                qtype = _qtype(outtype, shape)
                nbytes, dtype, stored = _stored(shape, qtype)
                writer.add_tensor_info(name, stored, dtype, nbytes, raw_dtype=qtype)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for done, (name, hf_name, shape) in enumerate(plan, 1):
                data = extra if not hf_name else _transform(model, hf_name, weights.get(hf_name))
                assert data is not None and tuple(data.shape) == tuple(shape), name
                writer.write_tensor_data(gguf.quants.quantize(np.ascontiguousarray(data), _qtype(outtype, shape)))
                if progress is not None:
                    progress(done, len(plan))
    finally:
        writer.close()


def _qtype(outtype: str, shape: tuple[int, ...]) -> Any:
    from gguf import GGMLQuantizationType as Q

    if len(shape) == 1 or outtype == "f32":
        return Q.F32  # norms, biases and rope factors stay f32 (as in llama.cpp's converter)
    if outtype == "q8_0" and shape[-1] % 32:
        return Q.F16  # rows that are not whole Q8_0 blocks
    return {"f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0}[outtype]


def _stored(shape: tuple[int, ...], qtype: Any) -> tuple[int, Any, tuple[int, ...]]:
    """(bytes, numpy dtype, shape) as GGUFWriter.add_tensor_info wants them for this type."""
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import quant_shape_to_byte_shape

    count = math.prod(shape)
    if qtype == Q.F32:
        return count * 4, np.dtype(np.float32), shape
    if qtype == Q.F16:
        return count * 2, np.dtype(np.float16), shape
    byte_shape = quant_shape_to_byte_shape(shape, qtype)
    return math.prod(byte_shape), np.dtype(np.uint8), byte_shape


def _add_hparams(writer: Any, model: _Model, outtype: str) -> None:
    import gguf

    hp = model.hparams
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(model.folder.name)
    writer.add_context_length(hp["n_ctx"])
    writer.add_embedding_length(hp["n_embd"])
    writer.add_block_count(hp["n_layer"])
    writer.add_feed_forward_length(hp["n_ff"])
    writer.add_head_count(hp["n_head"])
    writer.add_head_count_kv(hp["n_head_kv"])
    writer.add_layer_norm_rms_eps(hp["eps"])
    writer.add_rope_freq_base(hp["rope_theta"])
    writer.add_rope_dimension_count(hp["head_dim"])
    if hp["head_dim"] != hp["n_embd"] // hp["n_head"]:
        writer.add_key_length(hp["head_dim"])
        writer.add_value_length(hp["head_dim"])
    writer.add_vocab_size(hp["n_vocab"])
    rope = hp["rope"]
    if rope["rope_type"] == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype]  # fmt: skip
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _rope_freqs(hp: dict[str, Any]) -> np.ndarray | None:
    """Llama 3.x's rope scaling as llama.cpp reads it: per-frequency divisors in a ``rope_freqs`` tensor.

    The same smooth interpolation between ``low_freq_factor`` and ``high_freq_factor`` wavelengths
    as transformers' ``llama3`` rope, expressed as ``inv_freq / scaled_inv_freq``.
    """
    rope = hp["rope"]
    if rope["rope_type"] != "llama3":
        return None
    import numpy as np

    dim = hp["head_dim"]
    inv_freq = 1.0 / (hp["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    factor, low, high = float(rope["factor"]), float(rope["low_freq_factor"]), float(rope["high_freq_factor"])
    old_ctx = float(rope["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    smooth = np.clip((old_ctx / wavelen - low) / (high - low), 0.0, 1.0)
    scaled = np.where(wavelen > old_ctx / low, inv_freq / factor, inv_freq)
    medium = (wavelen <= old_ctx / low) & (wavelen >= old_ctx / high)
    scaled = np.where(medium, (1 - smooth) * inv_freq / factor + smooth * inv_freq, scaled)
    factors: np.ndarray = (inv_freq / scaled).astype(np.float32)
    return factors


class _Weights:
    """Tensors of one checkpoint by name, opened lazily from safetensors files (or PyTorch ``.bin``)."""

    def __init__(self, stack: contextlib.ExitStack, files: list[Path]) -> None:
        import torch
        from safetensors import safe_open

        self._get: dict[str, Callable[[], Any]] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        for path in files:
            if path.suffix == ".safetensors":
                handle = stack.enter_context(safe_open(str(path), framework="pt"))
                for name in handle.keys():  # noqa: SIM118 - a safetensors handle is not a mapping
                    self.shapes[name] = tuple(handle.get_slice(name).get_shape())
                    self._get[name] = functools.partial(handle.get_tensor, name)
            else:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                for name, tensor in state.items():
                    self.shapes[name] = tuple(tensor.shape)
                    self._get[name] = functools.partial(_same, tensor)

    def get(self, name: str) -> np.ndarray:
        import torch

        array: np.ndarray = self._get[name]().to(torch.float32).numpy()
        return array


def _same(value: Any) -> Any:
    return value


@contextlib.contextmanager
def _open_weights(files: list[Path]) -> Iterator[_Weights]:
    try:
        import safetensors  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise ConversionError(_NEEDS) from exc
    with contextlib.ExitStack() as stack:
        yield _Weights(stack, files)


def _plan_tensors(model: _Model, weights: _Weights) -> list[tuple[str, str, tuple[int, ...]]]:
    """(GGUF name, HF name, shape) of every tensor to write, checked against the architecture's name map."""
    import gguf

    hp = model.hparams
    arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[model.arch]
    names = gguf.get_tensor_name_map(arch, hp["n_layer"])
    plan = []
    for hf_name, shape in weights.shapes.items():
        if hf_name.endswith(".rotary_emb.inv_freq") or (hp["tied"] and hf_name == "lm_head.weight"):
            continue  # recomputed by llama.cpp / the same tensor as the embedding
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ConversionError(
                f"{model.folder}: tensor {hf_name!r} has no GGUF name for the {model.arch} architecture "
                "(a modified architecture, or adapters not merged: merge LoRA weights before exporting)"
            )
        plan.append((name, hf_name, shape))
    embedding = next((shape for name, _, shape in plan if name == "token_embd.weight"), None)
    if embedding is None:
        raise ConversionError(f"{model.folder}: no token embedding (model.embed_tokens.weight) in the weights")
    if embedding[0] != hp["n_vocab"]:
        raise ConversionError(
            f"{model.folder / 'config.json'}: field 'vocab_size' is {hp['n_vocab']} but the embedding has "
            f"{embedding[0]} rows"
        )
    return plan


def _transform(model: _Model, hf_name: str, data: np.ndarray) -> np.ndarray:
    """Llama/Mistral Q and K rows into llama.cpp's rotary layout; Qwen2 uses NeoX rope, which is HF's own."""
    hp = model.hparams
    if model.arch == "llama":
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            return rotary_permute(data, hp["n_head"])
        if hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            return rotary_permute(data, hp["n_head_kv"])
    return data


# -- vocabulary ---------------------------------------------------------------------------------


def _add_vocab(writer: Any, model: _Model) -> None:
    """Tokens, token types, merges, special tokens and the chat template, as llama.cpp's tokenizers expect."""
    import gguf

    spec = model.tokenizer.get("model") or {}
    if spec.get("type") != "BPE":
        raise ConversionError(
            f"{model.folder / 'tokenizer.json'}: field 'model.type' is {spec.get('type')!r}; only BPE tokenizers "
            "(byte-level like GPT-2/Llama 3/Qwen2, or byte-fallback like Llama 2/Mistral) can be exported"
        )
    hf = _hf_tokenizer(model.folder)
    n_vocab = model.hparams["n_vocab"]
    id_to_token = {i: t for t, i in hf.get_vocab().items()}
    if max(id_to_token) >= n_vocab:
        raise ConversionError(
            f"{model.folder}: the tokenizer has ids up to {max(id_to_token)} but the embedding has {n_vocab} rows"
        )
    added = {i: tok for i, tok in hf.added_tokens_decoder.items()}
    byte_fallback = bool(spec.get("byte_fallback"))
    merge_rank = _merge_ranks(spec) if byte_fallback else {}
    tokens, types, scores = [], [], []
    for i in range(n_vocab):
        text = id_to_token.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(text)
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        elif byte_fallback and _BYTE_TOKEN.fullmatch(text):
            tokens.append(text)
            types.append(gguf.TokenType.BYTE)
        elif byte_fallback and text == spec.get("unk_token"):
            tokens.append(text)
            types.append(gguf.TokenType.UNKNOWN)
        else:
            tokens.append(text)
            types.append(gguf.TokenType.NORMAL)
        scores.append(-float(merge_rank.get(text or "", 0)))
    if byte_fallback:
        # llama.cpp's SentencePiece-style tokenizer merges the best-scoring pair first: the merge order as scores
        writer.add_tokenizer_model("llama")
        writer.add_token_scores(scores)
        writer.add_add_space_prefix(_adds_space_prefix(model.tokenizer))
    else:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(_bpe_pre(model))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model.folder, load_merges=not byte_fallback, n_vocab=n_vocab)
    probe = hf("a").input_ids
    bos, eos = special.special_token_ids.get("bos"), special.special_token_ids.get("eos")
    special.add_special_token["bos"] = bos is not None and probe[:1] == [bos]  # what transformers does, not a guess
    special.add_special_token["eos"] = eos is not None and probe[-1:] == [eos]
    if special.chat_template is None:
        log.warning("%s has no chat template: llama.cpp will fall back to its default one", model.folder)
    special.add_to_gguf(writer, quiet=True)


def _hf_tokenizer(folder: Path) -> Any:
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise ConversionError(_NEEDS) from exc
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:
        raise ConversionError(f"{folder}: transformers cannot load the tokenizer: {type(exc).__name__}: {exc}") from exc


def _merge_ranks(spec: dict[str, Any]) -> dict[str, int]:
    ranks: dict[str, int] = {}
    for rank, merge in enumerate(spec.get("merges") or []):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        ranks.setdefault(left + right, rank + 1)
    return ranks


def _adds_space_prefix(tokenizer: dict[str, Any]) -> bool:
    """SentencePiece-style tokenizers mark a leading word boundary: by a Prepend normalizer or a Metaspace step."""
    steps: list[dict[str, Any]] = []
    for key in ("normalizer", "pre_tokenizer"):
        node = tokenizer.get(key) or {}
        steps += node.get("normalizers") or node.get("pretokenizers") or [node]
    for step in steps:
        if step.get("type") == "Prepend" and step.get("prepend") == "▁":
            return True
        if step.get("type") == "Metaspace":
            return step.get("prepend_scheme", "always") != "never" and bool(step.get("add_prefix_space", True))
    return False


def _bpe_pre(model: _Model) -> str:
    """llama.cpp's name for this byte-level tokenizer's pre-tokenizer (how text is split before BPE)."""
    pre = model.tokenizer.get("pre_tokenizer") or {}
    steps: list[dict[str, Any]] = (pre.get("pretokenizers") or []) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    byte_level = steps[-1] if kinds and kinds[-1] == "ByteLevel" else None
    if byte_level is not None and not byte_level.get("add_prefix_space", False):
        if kinds == ["ByteLevel"] and byte_level.get("use_regex", True):
            return "gpt-2"
        first = steps[0] if steps else {}
        if kinds == ["Digits", "ByteLevel"] and first.get("individual_digits") and byte_level.get("use_regex", True):
            return "smollm"
        if kinds == ["Split", "ByteLevel"] and not byte_level.get("use_regex", True):
            name = _SPLIT_REGEXES.get((first.get("pattern") or {}).get("Regex", ""))
            if name is not None and first.get("behavior") == "Isolated":
                return name
    raise ConversionError(
        f"{model.folder / 'tokenizer.json'}: field 'pre_tokenizer' ({json.dumps(pre)[:200]}) is not one llama.cpp "
        "is known to reproduce here; supported: GPT-2 byte-level, SmolLM (digits + byte-level), Llama 3 and Qwen2 "
        "regex splits"
    )
