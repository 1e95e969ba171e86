"""The real check: SmolLM2-135M-Instruct (from the embedded GGUF), real chat template, fp32."""

import pytest
import torch
import torch.nn.functional as F
from lw_train import PackedCollator, PaddedCollator, model_loss, pack, tokenize_chats

pytestmark = pytest.mark.slow

CHATS = [
    [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}],
    [
        {"role": "system", "content": "You write long, careful answers."},
        {"role": "user", "content": "Describe a lighthouse at night in two sentences."},
        {"role": "assistant", "content": "The beam sweeps the dark water.\u200b Ships turn away from the rocks."},
    ],
    [
        {"role": "user", "content": "Count to five."},
        {"role": "assistant", "content": "1, 2, 3, 4, 5."},
        {"role": "user", "content": "And back."},
        {"role": "assistant", "content": "5, 4, 3, 2, 1."},
    ],
]


@pytest.fixture(scope="module")
def model_and_samples(smollm2_folder, smollm2_tokenizer, tmp_path_factory):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2_folder, dtype=torch.float32, attn_implementation="sdpa")
    samples = tokenize_chats(CHATS, smollm2_tokenizer, max_tokens=512, cache=tmp_path_factory.mktemp("tok"))
    return model, smollm2_tokenizer, samples


def test_real_template_trains_only_assistant_text(model_and_samples):
    _, tokenizer, samples = model_and_samples
    trained = [tokenizer.decode([t for t in s["labels"] if t != -100]) for s in samples]
    assert trained == [
        "Blue.<|im_end|>",
        "The beam sweeps the dark water. Ships turn away from the rocks.<|im_end|>",
        "1, 2, 3, 4, 5.<|im_end|>5, 4, 3, 2, 1.<|im_end|>",
    ]


def test_packed_equals_alone_for_logits_losses_and_gradients(model_and_samples):
    model, tokenizer, samples = model_and_samples
    [bin_] = pack(samples.lengths, 512)
    members = [samples[i] for i in bin_]
    batch = PackedCollator(pad_token_id=tokenizer.pad_token_id, pad_to_multiple_of=64)(members)
    model.eval()
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits[0]
        bounds = batch["cu_seq_lens_q"].tolist()
        per_sample = []
        for i, sample in enumerate(members):
            alone = model(torch.as_tensor(sample["input_ids"], dtype=torch.long)[None], use_cache=False).logits[0]
            assert (packed[bounds[i] : bounds[i + 1]] - alone).abs().max() <= 1e-4
            targets = torch.as_tensor(sample["labels"][1:], dtype=torch.long)
            per_sample.append(F.cross_entropy(alone[:-1], targets, ignore_index=-100))
        sequence = model_loss(model, batch, reduction="sequence", chunk_size=16)
    torch.testing.assert_close(sequence, torch.stack(per_sample).mean(), rtol=1e-5, atol=1e-5)

    def grads(batch):
        model.zero_grad()
        model_loss(model, batch, reduction="sequence").backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    padded = grads(PaddedCollator(pad_token_id=tokenizer.pad_token_id)(members))
    assert (grads(batch) - padded).norm() / padded.norm() <= 1e-5
    model.zero_grad()
