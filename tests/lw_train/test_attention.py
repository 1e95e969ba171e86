"""lw-train's flex and varlen attention for packed rows, as far as the CPU runs them, and how a path is chosen.

torch (2.13) runs flex attention on the CPU forward only (its backward refuses CPU tensors) and varlen attention
(FlashAttention kernels) on CUDA only. So here: flex's packed logits against each sample alone, compiled as on a GPU;
varlen's own code (layout, sample bounds, the mask it skips, what falls back to sdpa) with gradients, around a
reference kernel in place of torch's; the selection and its errors. The real kernels' gradients, in fp32 and bf16:
test_cuda.py.
"""

from __future__ import annotations

import logging
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
from lw_train import ConfigError, PackedCollator, PaddedCollator, SFTConfig, model_loss
from lw_train import attention as lw_attention

SAMPLES = [
    {"input_ids": [5, 17, 3, 44, 9, 12, 80, 2, 61], "labels": [-100, -100, 3, 44, 9, 12, 80, 2, 61]},
    {"input_ids": list(range(10, 33)), "labels": [-100] * 5 + list(range(15, 33))},
    {"input_ids": [7, 7, 8, 9, 1, 2], "labels": [-100, 7, 8, 9, 1, 2]},
    {"input_ids": [90 - i for i in range(14)], "labels": [90 - i for i in range(14)]},
]


def _inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "labels"}


def _gradients(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.slow  # compiles flex attention and its block mask on the CPU (~6-20 s on 2 cores)
def test_flex_packed_logits_equal_each_sample_alone_on_the_cpu(tiny_llama):
    model = tiny_llama().eval()
    batch = PackedCollator(pad_to_multiple_of=64)(SAMPLES)
    padded = PaddedCollator()(SAMPLES)
    with torch.no_grad():
        alone = [model(torch.tensor([s["input_ids"]]), use_cache=False).logits[0] for s in SAMPLES]
        padded_sdpa = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
        lw_attention.use_flex_attention(model)
        assert model.config._attn_implementation == "lw_flex"
        packed = model(**_inputs(batch), use_cache=False).logits[0]
        padded_flex = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
    bounds = batch["cu_seq_lens_q"].tolist()
    for i, reference in enumerate(alone):  # each sample alone through plain sdpa: an independent reference
        assert (packed[bounds[i] : bounds[i + 1]] - reference).abs().max() <= 1e-5
    real = padded["attention_mask"].bool()
    assert (padded_flex[real] - padded_sdpa[real]).abs().max() <= 1e-5  # padded batches: flex with a padding mask


@pytest.mark.slow  # compiles flex attention's block mask for a sliding window on the CPU
def test_flex_keeps_sliding_windows():
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=4, attn_implementation="sdpa",
    )  # fmt: skip
    mistral = MistralForCausalLM(config).eval()
    inputs = _inputs(PackedCollator()(SAMPLES))
    with torch.no_grad():
        windowed = mistral(**inputs, use_cache=False).logits
        flex = lw_attention.use_flex_attention(mistral)(**inputs, use_cache=False).logits
    assert (windowed - flex).abs().max() <= 1e-5


@pytest.mark.slow  # compiles flex attention for bf16 on the CPU
def test_flex_under_autocast_runs_in_the_autocast_dtype(tiny_llama):
    """Mixed precision leaves queries and keys in fp32 (rotary) beside bf16 values; flex wants one dtype."""
    model = tiny_llama().eval()
    batch = PackedCollator()(SAMPLES)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        masked_sdpa = model(**_inputs(batch), use_cache=False).logits[0].float()
        flex = lw_attention.use_flex_attention(model)(**_inputs(batch), use_cache=False).logits[0].float()
    scale = masked_sdpa.abs().max()
    assert ((flex - masked_sdpa).abs().max() / scale) <= 3e-2  # bf16: the two kernels round differently


def _reference_varlen_kernel(calls: list[tuple[list[int], int]]):
    """sdpa per sample on ``[T, heads, dim]`` tensors, causal within ``window`` (left, right; -1 unbounded): what
    torch's varlen kernel computes, on the CPU."""

    def kernel(query, key, value, cu_seq_lens, max_length, *, scale, window):
        assert query.dim() == key.dim() == 3 and cu_seq_lens.dtype == torch.int32 and window[1] == 0
        bounds = cu_seq_lens.tolist()
        calls.append((bounds, max_length))
        outputs = []
        for start, end in pairwise(bounds):
            position = torch.arange(end - start)
            seen = position[:, None] - position[None, :]
            allowed = (seen >= 0) & ((seen <= window[0]) if window[0] >= 0 else True)
            attended = F.scaled_dot_product_attention(
                *(t[start:end].transpose(0, 1)[None] for t in (query, key, value)),
                attn_mask=allowed,
                scale=scale,
                enable_gqa=query.shape[1] != key.shape[1],
            )
            outputs.append(attended[0].transpose(0, 1))
        return torch.cat(outputs)

    return kernel


def test_varlen_glue_gives_each_sample_alone_and_padded_gradients(tiny_llama, monkeypatch):
    calls: list[tuple[list[int], int]] = []
    monkeypatch.setattr(lw_attention, "_varlen_kernel", _reference_varlen_kernel(calls))
    reference = tiny_llama()
    model_loss(reference, PaddedCollator()(SAMPLES), reduction="sequence").backward()
    model = lw_attention.use_varlen_attention(tiny_llama())
    assert model.config._attn_implementation == "lw_varlen"
    batch = PackedCollator(pad_to_multiple_of=64)(SAMPLES)
    model_loss(model, batch, reduction="sequence").backward()
    bounds = batch["cu_seq_lens_q"].tolist()
    longest = max(b - a for a, b in pairwise(bounds))
    assert calls == [(bounds, longest)] * 2  # one call per layer, all samples and the dummy segment in it
    assert ((_gradients(model) - _gradients(reference)).norm() / _gradients(reference).norm()) <= 1e-5

    model.eval()
    with torch.no_grad():
        packed = model(**_inputs(batch), use_cache=False).logits[0]
        for i, sample in enumerate(SAMPLES):
            alone = reference.eval()(torch.tensor([sample["input_ids"]]), use_cache=False).logits[0]
            assert (packed[bounds[i] : bounds[i + 1]] - alone).abs().max() <= 1e-5
        calls.clear()  # without cu_seq_lens the bounds come from where position_ids restart
        positions_only = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}
        assert torch.equal(model(**positions_only, use_cache=False).logits[0], packed)
        assert calls[0] == (bounds, longest)
        calls.clear()  # a padded batch goes to sdpa with its mask
        padded = PaddedCollator()(SAMPLES)
        logits = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
        expected = reference(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
        assert calls == [] and torch.equal(logits, expected)


def test_varlen_generates_like_sdpa_and_keeps_sliding_windows(tiny_llama, monkeypatch):
    from transformers import MistralConfig, MistralForCausalLM

    calls: list[tuple[list[int], int]] = []
    monkeypatch.setattr(lw_attention, "_varlen_kernel", _reference_varlen_kernel(calls))
    model = tiny_llama().eval()
    prompt = torch.tensor([SAMPLES[1]["input_ids"][:7]])
    expected = model.generate(prompt, max_new_tokens=6, do_sample=False)
    got = lw_attention.use_varlen_attention(model).generate(prompt, max_new_tokens=6, do_sample=False)
    assert torch.equal(got, expected) and len(calls) == 2  # the prompt in both layers; new tokens: sdpa

    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=4, attn_implementation="sdpa",
    )  # fmt: skip
    mistral = MistralForCausalLM(config).eval()
    inputs = _inputs(PackedCollator()(SAMPLES))
    with torch.no_grad():
        windowed = mistral(**inputs, use_cache=False).logits
        varlen = lw_attention.use_varlen_attention(mistral)(**inputs, use_cache=False).logits
    assert (windowed - varlen).abs().max() <= 1e-5


def test_varlen_builds_no_mask_for_an_unpadded_row_and_sdpas_for_the_rest():
    assert lw_attention._varlen_mask(batch_size=1, q_length=32_768, kv_length=32_768) is None
    padding = torch.tensor([[True, True, False], [True, True, True]])
    mask = lw_attention._varlen_mask(batch_size=2, q_length=3, kv_length=3, attention_mask=padding)
    assert mask.shape == (2, 1, 3, 3) and not mask[0, 0, 2, 2] and mask[1, 0, 2, 1] and not mask[1, 0, 1, 2]


def test_varlen_kernel_refuses_fp32_with_what_to_do():
    q = torch.zeros(4, 2, 8)
    cu = torch.tensor([0, 4], dtype=torch.int32)
    with pytest.raises(ConfigError, match=r"bf16 or fp16, not torch.float32.*dtype='bfloat16'"):
        lw_attention._varlen_kernel(q, q, q, cu, 4, scale=None, window=(-1, 0))


def test_auto_picks_a_cuda_path_only_once_it_is_measured_faster(monkeypatch):
    from lw_train import sft

    choice, why = sft._auto_attention(cuda=True, flash=False, varlen=True)
    assert choice == "sdpa" and "not measured on CUDA yet: flex, varlen" in why
    assert sft._auto_attention(cuda=True, flash=True)[0] == "flash_attention_2"
    assert sft._auto_attention(cuda=False, flash=True, varlen=True)[0] == "segments"
    measured = {"sdpa": 1.0, "segments": 0.26, "flex": 1.5, "varlen": 1.8}
    monkeypatch.setattr(sft, "_CUDA_SPEED_VS_MASKED_SDPA", measured)
    assert sft._auto_attention(cuda=True, flash=False, varlen=True)[0] == "varlen"
    assert sft._auto_attention(cuda=True, flash=False, varlen=False)[0] == "flex"  # this torch has no varlen


def _config(tiny_run, tmp_path, **settings) -> SFTConfig:
    model_folder, data = tiny_run
    values = {"model": str(model_folder), "data": str(data), "output_dir": str(tmp_path / "out"), **settings}
    return SFTConfig.validated(values)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU's refusal")
@pytest.mark.parametrize("attention", ["flex", "varlen"])
def test_flex_and_varlen_are_refused_for_training_on_the_cpu(tiny_run, tmp_path, attention):
    from lw_train.sft import _load_model

    config = _config(tiny_run, tmp_path, attention=attention)
    with pytest.raises(ConfigError, match=f"attention={attention!r} trains on a CUDA GPU only.*use 'auto'"):
        _load_model(config, config.model)


@pytest.mark.skipif(torch.cuda.is_available(), reason="what auto picks on the CPU")
def test_auto_says_which_path_it_picked(tiny_run, tmp_path, caplog):
    from lw_train.sft import _load_model

    config = _config(tiny_run, tmp_path)
    with caplog.at_level(logging.INFO, logger="lw_train"):
        model = _load_model(config, config.model)
    assert model.config._attn_implementation == "lw_segments"
    assert "attention: auto picked 'segments' (on the CPU per-segment sdpa measured 1.3x" in caplog.text
