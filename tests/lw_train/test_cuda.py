"""Packed rows on CUDA: each sample of a packed row gives what it gives alone, with every attention path.

On a GPU, sdpa dispatches to other kernels than on the CPU (flash / memory-efficient with a mask), so isolation and
gradients are checked again there, in fp32 (tight) and bf16 (the training dtype; loose, kernels round differently).
"""

import pytest
import torch
import torch.nn.functional as F
from lw_train import PackedCollator, PaddedCollator, model_loss, use_segment_attention

pytestmark = pytest.mark.gpu

LENGTHS = (37, 120, 5, 260, 64)


def _samples(vocab: int) -> list[dict[str, list[int]]]:
    generator = torch.Generator().manual_seed(1)
    samples = []
    for length in LENGTHS:
        ids = torch.randint(0, vocab, (length,), generator=generator).tolist()
        samples.append({"input_ids": ids, "labels": [-100] * (length // 3) + ids[length // 3 :]})
    return samples


def _model(tiny_llama, attn: str, dtype: torch.dtype):
    model = tiny_llama("sdpa", vocab_size=211)
    if attn == "segments":
        use_segment_attention(model)
    elif attn == "eager":
        model.set_attn_implementation("eager")
    return model.to(device="cuda", dtype=dtype)


def _on_cuda(batch: dict) -> dict:
    return {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("attn", ["sdpa", "segments", "eager"])
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


@pytest.mark.parametrize("attn", ["sdpa", "segments"])
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
