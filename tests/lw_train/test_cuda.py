"""Packed rows on CUDA: each sample of a packed row gives what it gives alone, with every attention path.

On a GPU, sdpa dispatches to other kernels than on the CPU (flash / memory-efficient with a mask), and flex and varlen
attention run only there, so isolation and gradients are checked again there, in fp32 (tight) and bf16 (the training
dtype; loose, kernels round differently). The model's head size is 16: flex attention's CUDA kernels need >= 16.
"""

import pytest
import torch
import torch.nn.functional as F
from lw_train import PackedCollator, PaddedCollator, SFTConfig, model_loss, train_sft, use_segment_attention
from lw_train.attention import use_flex_attention, use_varlen_attention

pytestmark = pytest.mark.gpu

SWITCH = {"segments": use_segment_attention, "flex": use_flex_attention, "varlen": use_varlen_attention}

LENGTHS = (37, 120, 5, 260, 64)


def _samples(vocab: int) -> list[dict[str, list[int]]]:
    generator = torch.Generator().manual_seed(1)
    samples = []
    for length in LENGTHS:
        ids = torch.randint(0, vocab, (length,), generator=generator).tolist()
        samples.append({"input_ids": ids, "labels": [-100] * (length // 3) + ids[length // 3 :]})
    return samples


def _model(tiny_llama, attn: str, dtype: torch.dtype):
    model = tiny_llama("sdpa", vocab_size=211, hidden_size=64)
    if attn in SWITCH:
        SWITCH[attn](model)
    elif attn == "eager":
        model.set_attn_implementation("eager")
    return model.to(device="cuda", dtype=dtype)


def _on_cuda(batch: dict) -> dict:
    return {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


FP32, BF16 = (torch.float32, 1e-4), (torch.bfloat16, 3e-2)


@pytest.mark.parametrize(
    ("attn", "dtype", "tolerance"),
    [(attn, *precision) for attn in ("sdpa", "segments", "eager", "flex") for precision in (FP32, BF16)]
    + [("varlen", *BF16)],  # FlashAttention kernels: bf16/fp16 only
)
def test_packed_logits_equal_each_sample_alone_on_cuda(attn, dtype, tolerance, tiny_llama):
    model = _model(tiny_llama, attn, dtype).eval()
    samples = _samples(model.config.vocab_size)
    batch = _on_cuda(PackedCollator(pad_to_multiple_of=64)(samples))
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits[0].float()
        bounds = batch["cu_seq_lens_q"].tolist()
        for i, sample in enumerate(samples):
            alone = model(torch.tensor([sample["input_ids"]], device="cuda"), use_cache=False).logits[0].float()
            scale = alone.abs().max().clamp_min(1.0)
            assert ((packed[bounds[i] : bounds[i + 1]] - alone).abs().max() / scale) <= tolerance


@pytest.mark.parametrize("attn", ["sdpa", "segments", "flex"])
def test_packed_gradients_equal_padded_on_cuda(attn, tiny_llama):
    model = _model(tiny_llama, attn, torch.float32).train()
    samples = _samples(model.config.vocab_size)

    def grads(batch: dict) -> torch.Tensor:
        model.zero_grad()
        model_loss(model, _on_cuda(batch), reduction="sequence").backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    padded = grads(PaddedCollator()(samples))
    packed = grads(PackedCollator(pad_to_multiple_of=64)(samples))
    assert (packed - padded).norm() / padded.norm() <= 1e-5


def test_sequence_loss_on_cuda_is_the_mean_of_per_sample_losses(tiny_llama):
    model = _model(tiny_llama, "segments", torch.float32).eval()
    samples = _samples(model.config.vocab_size)
    with torch.no_grad():
        packed = model_loss(model, _on_cuda(PackedCollator()(samples)), reduction="sequence")
        per_sample = []
        for sample in samples:
            logits = model(torch.tensor([sample["input_ids"]], device="cuda"), use_cache=False).logits[0]
            targets = torch.tensor(sample["labels"][1:], device="cuda")
            per_sample.append(F.cross_entropy(logits[:-1], targets, ignore_index=-100))
    torch.testing.assert_close(packed, torch.stack(per_sample).mean(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attn", ["sdpa", "flex", "varlen"])
def test_packed_loss_and_gradients_in_bf16_stay_as_close_to_fp32_as_padded_sdpa(attn, tiny_llama):
    """bf16 autocast, as train_sft runs on CUDA. The stated tolerance: the packed row's loss within 1 % of the fp32
    padded loss, and its gradients no further from the fp32 ones (relative norm) than twice what sdpa's own padded
    bf16 batch is, or 1 %."""
    samples = _samples(211)
    packed_batch, padded_batch = PackedCollator(pad_to_multiple_of=64)(samples), PaddedCollator()(samples)

    def loss_and_grads(model, batch: dict, bf16: bool) -> tuple[float, torch.Tensor]:
        model.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = model_loss(model, _on_cuda(batch), reduction="sequence")
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    sdpa = _model(tiny_llama, "sdpa", torch.float32).train()
    reference_loss, reference = loss_and_grads(sdpa, padded_batch, bf16=False)
    baseline = (loss_and_grads(sdpa, padded_batch, bf16=True)[1] - reference).norm() / reference.norm()
    loss, grads = loss_and_grads(_model(tiny_llama, attn, torch.float32).train(), packed_batch, bf16=True)
    assert abs(loss - reference_loss) <= 1e-2 * abs(reference_loss)
    assert (grads - reference).norm() / reference.norm() <= max(2 * baseline.item(), 1e-2)


@pytest.mark.parametrize("attn", ["flex", "varlen"])
def test_train_sft_with_flex_or_varlen_follows_sdpa_and_saves_an_sdpa_model(attn, tiny_run, tmp_path, tiny_llama):
    from transformers import AutoConfig

    model_folder, data = tiny_run  # the tiny model again with head size 16, beside the same tokenizer
    vocab_size = AutoConfig.from_pretrained(model_folder).vocab_size
    tiny_llama(vocab_size=vocab_size, hidden_size=64).save_pretrained(model_folder)

    def losses(attention: str) -> list[float]:
        config = SFTConfig.validated(
            {"model": str(model_folder), "data": str(data), "output_dir": str(tmp_path / attention),
             "max_tokens": 384, "max_steps": 3, "learning_rate": 1e-3, "warmup_ratio": 0.0, "attention": attention}
        )  # fmt: skip
        result = train_sft(config, progress=False)
        assert result.model.config._attn_implementation == "sdpa"  # what servers and generate() get
        return [entry["loss"] for entry in result.summary["losses"]]

    expected, got = losses("sdpa"), losses(attn)
    assert len(got) == len(expected) == 3
    assert all(abs(a - b) <= 2e-2 * abs(b) for a, b in zip(got, expected, strict=True)), (got, expected)
