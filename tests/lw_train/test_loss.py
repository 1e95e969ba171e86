import pytest
import torch
import torch.nn.functional as F
from lw_train import PackedCollator, PaddedCollator, TargetCounts, chunked_cross_entropy, count_targets, model_loss


def make_samples(lengths, vocab=97, seed=1):
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for n in lengths:
        ids = torch.randint(0, vocab, (n,), generator=generator)
        labels = ids.clone()
        labels[: n // 3] = -100  # an untrained prompt
        samples.append({"input_ids": ids.tolist(), "labels": labels.tolist()})
    return samples


SAMPLES = make_samples([9, 23, 6, 14])


def alone_losses(model, samples):
    """Per-sample (sum of token losses, trained tokens) with each sample run by itself through the full LM head."""
    results = []
    for sample in samples:
        logits = model(torch.tensor([sample["input_ids"]]), use_cache=False).logits[0, :-1]
        targets = torch.tensor(sample["labels"][1:])
        losses = F.cross_entropy(logits, targets, ignore_index=-100, reduction="none")
        results.append((losses.sum(), int((targets != -100).sum())))
    return results


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("block_mask", [False, True])
def test_packed_logits_equal_each_sample_alone(attn, block_mask, tiny_llama):
    model = tiny_llama(attn).eval()
    batch = PackedCollator(block_mask=block_mask, pad_to_multiple_of=64)(SAMPLES)
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        packed = model(**inputs, use_cache=False).logits[0]
        bounds = batch["cu_seq_lens_q"].tolist()
        for i, sample in enumerate(SAMPLES):
            alone = model(torch.tensor([sample["input_ids"]]), use_cache=False).logits[0]
            assert (packed[bounds[i] : bounds[i + 1]] - alone).abs().max() <= 1e-4


def test_regression_kv_cache_breaks_isolation_without_block_mask(tiny_llama):
    """transformers derives the packed mask only when no cache is created, hence use_cache=False in model_loss."""
    model = tiny_llama().eval()
    batch = PackedCollator()(SAMPLES)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        isolated = model(**inputs, use_cache=False).logits
        leaky = model(**inputs, use_cache=True).logits
        masked = model(**PackedCollator(block_mask=True)(SAMPLES) | {"labels": None}, use_cache=True).logits
    assert (isolated - leaky).abs().max() > 1e-3
    assert (isolated - masked).abs().max() <= 1e-5


def test_sequence_loss_is_the_mean_of_per_sample_losses(tiny_llama):
    model = tiny_llama().eval()
    with torch.no_grad():
        expected = torch.stack([total / n for total, n in alone_losses(model, SAMPLES)]).mean()
        packed = model_loss(model, PackedCollator()(SAMPLES), reduction="sequence", chunk_size=7)
        padded = model_loss(model, PaddedCollator()(SAMPLES), reduction="sequence", chunk_size=7)
    torch.testing.assert_close(packed, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(padded, expected, rtol=1e-5, atol=1e-6)


def test_token_loss_is_the_all_token_mean(tiny_llama):
    model = tiny_llama().eval()
    with torch.no_grad():
        per_sample = alone_losses(model, SAMPLES)
        expected = sum(total for total, _ in per_sample) / sum(n for _, n in per_sample)
        packed = model_loss(model, PackedCollator()(SAMPLES), reduction="token")
    torch.testing.assert_close(packed, expected, rtol=1e-5, atol=1e-6)


def gradients(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("reduction", ["token", "sequence"])
def test_gradients_packed_equal_padded(reduction, tiny_llama):
    model = tiny_llama()
    model_loss(model, PaddedCollator()(SAMPLES), reduction=reduction).backward()
    padded = gradients(model)
    model.zero_grad()
    model_loss(model, PackedCollator(pad_to_multiple_of=64)(SAMPLES), reduction=reduction).backward()
    packed = gradients(model)
    assert ((packed - padded).norm() / padded.norm()) <= 1e-5


@pytest.mark.parametrize("reduction", ["token", "sequence"])
def test_accumulation_and_ranks_with_global_counts_equal_one_big_batch(reduction, tiny_llama):
    """Four micro-batches (think 2 ranks x 2 accumulation steps) sum to the one-batch loss and gradient."""
    model = tiny_llama()
    collate = PackedCollator()
    whole = model_loss(model, collate(SAMPLES), reduction=reduction)
    whole.backward()
    expected = gradients(model)
    model.zero_grad()
    micro_batches = [collate([s]) for s in SAMPLES]
    counts = sum((count_targets(b) for b in micro_batches), TargetCounts()).all_reduce()
    whole_counts = count_targets(collate(SAMPLES))
    assert (counts.tokens, counts.sequences) == (whole_counts.tokens, whole_counts.sequences)
    total = torch.zeros(())
    for batch in micro_batches:
        loss = model_loss(model, batch, reduction=reduction, global_counts=counts)
        loss.backward()
        total = total + loss.detach()
    torch.testing.assert_close(total, whole.detach(), rtol=1e-6, atol=1e-7)
    assert ((gradients(model) - expected).norm() / expected.norm()) <= 1e-5


def test_chunked_cross_entropy_equals_full_with_gradients():
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    full = F.cross_entropy(hidden @ weight.T, targets, reduction="none")
    full.sum().backward()
    full_grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    chunked = chunked_cross_entropy(hidden, weight, targets, chunk_size=8)
    chunked.sum().backward()
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(hidden.grad, full_grads[0])
    torch.testing.assert_close(weight.grad, full_grads[1])


def test_counts_ignore_the_dummy_segment_and_untrained_samples():
    samples = [*SAMPLES[:2], {"input_ids": [1, 2, 3], "labels": [-100, -100, -100]}]
    counts = count_targets(PackedCollator(pad_to_multiple_of=64)(samples))
    trained = sum(sum(t != -100 for t in s["labels"][1:]) for s in SAMPLES[:2])
    assert counts == TargetCounts(tokens=trained, sequences=2, rows=1)


def test_a_batch_without_trained_tokens_gives_a_zero_loss_with_gradients(tiny_llama):
    model = tiny_llama()
    loss = model_loss(model, PackedCollator()([{"input_ids": [1, 2, 3], "labels": [-100, -100, -100]}]))
    loss.backward()
    assert loss.item() == 0.0
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() == 0


def test_segment_attention_matches_each_sample_alone_and_padded_gradients(tiny_llama, monkeypatch):
    from lw_train import use_segment_attention

    sdpa, seen = F.scaled_dot_product_attention, []
    monkeypatch.setattr(
        F, "scaled_dot_product_attention", lambda q, *a, **k: seen.append(q.shape[2]) or sdpa(q, *a, **k)
    )

    reference = tiny_llama()
    model_loss(reference, PaddedCollator()(SAMPLES), reduction="sequence").backward()
    model = use_segment_attention(tiny_llama())
    assert model.config._attn_implementation == "lw_segments"
    batch = PackedCollator(pad_to_multiple_of=64)(SAMPLES)
    seen.clear()
    model_loss(model, batch, reduction="sequence").backward()
    assert seen == [9, 23, 6, 14, 12] * 2  # each segment (and the dummy one) alone, in both layers
    assert ((gradients(model) - gradients(reference)).norm() / gradients(reference).norm()) <= 1e-5
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        packed = model.eval()(**inputs, use_cache=False).logits[0]
        bounds = batch["cu_seq_lens_q"].tolist()
        for i, sample in enumerate(SAMPLES):  # a single sample (no cu_seq_lens) goes through plain sdpa
            alone = model(torch.tensor([sample["input_ids"]]), use_cache=False).logits[0]
            assert (packed[bounds[i] : bounds[i + 1]] - alone).abs().max() <= 1e-4
        padded = PaddedCollator()(SAMPLES)
        logits = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
        assert (logits[0, : len(SAMPLES[0]["input_ids"])] - packed[: bounds[1]]).abs().max() <= 1e-4


def test_segment_attention_leaves_sliding_window_layers_to_sdpa():
    from lw_train import use_segment_attention
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=4, attn_implementation="sdpa",
    )  # fmt: skip
    model = MistralForCausalLM(config).eval()
    batch = PackedCollator()(SAMPLES)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        windowed = model(**inputs, use_cache=False).logits
        segmented = use_segment_attention(model)(**inputs, use_cache=False).logits
    assert (windowed - segmented).abs().max() <= 1e-5


def test_longwriter_loss_is_the_released_codes_row_mean_times_samples_over_30(tiny_llama):
    """THUDM/LongWriter train/main.py + patch/modeling_llama.py: CE mean over the pack * (samples in pack) / 30."""
    model = tiny_llama().eval()
    batch = PackedCollator(pad_to_multiple_of=64)(SAMPLES)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits[0, :-1]
        original = F.cross_entropy(logits, batch["labels"][0, 1:], ignore_index=-100) * len(SAMPLES) / 30
        ours = model_loss(model, batch, reduction="longwriter", chunk_size=5)
    torch.testing.assert_close(ours, original, rtol=1e-5, atol=1e-7)


def test_longwriter_loss_of_a_step_is_the_mean_over_its_rows_however_split(tiny_llama):
    """Rows [s0, s1] and [s2, s3]: one rank with 2 accumulation steps = 2 ranks = the mean of the two row values."""
    model = tiny_llama()
    collate = PackedCollator()
    rows = [collate(SAMPLES[:2]), collate(SAMPLES[2:])]
    with torch.no_grad():
        per_row = [model_loss(model, row, reduction="longwriter") for row in rows]
    counts = sum((count_targets(b) for b in rows), TargetCounts())
    assert counts.rows == 2
    total = sum(model_loss(model, row, reduction="longwriter", global_counts=counts) for row in rows)
    torch.testing.assert_close(total, torch.stack(per_row).mean(), rtol=1e-6, atol=1e-7)
    padded = PaddedCollator()(SAMPLES)  # a padded batch: every row holds one sample (weight 1/30)
    with torch.no_grad():
        expected = torch.stack([total / n for total, n in alone_losses(model, SAMPLES)]).mean() / 30
        torch.testing.assert_close(model_loss(model, padded, reduction="longwriter"), expected, rtol=1e-5, atol=1e-7)
