"""TRL's SFTTrainer packing and sample isolation without FlashAttention (TRL 1.16, transformers 5.2x, CPU sdpa).

The batches are built exactly as SFTTrainer builds them (``pack_dataset`` + its collator) and run the way its
``compute_loss`` runs them (``use_cache=False``). ``wrapped`` packing concatenates samples into one causal row, so
every sample after the first attends to the ones before it. ``bfd`` (its default) marks samples by restarting
``position_ids``; sdpa stays isolated only because transformers then builds a block-diagonal T x T mask over the
whole row (quadratic memory; with the default ``use_cache=True`` it would attend across samples too, see
test_loss.py). lw-train's PackedCollator + segment attention isolate samples without the T x T mask.
"""

import datasets
import pytest
import torch
from trl.data_utils import pack_dataset
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

LENGTHS = (9, 23, 6, 14)


def _worst_difference_from_alone(model, strategy: str) -> list[float]:
    generator = torch.Generator().manual_seed(1)
    sequences = [torch.randint(1, 97, (n,), generator=generator).tolist() for n in LENGTHS]
    packed = pack_dataset(datasets.Dataset.from_dict({"input_ids": sequences}), 64, strategy=strategy)
    assert len(packed) == 1  # all four samples share one row
    collate = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=strategy == "bfd")
    batch = collate([packed[0]])
    with torch.no_grad():
        row = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits[0]
        ids = batch["input_ids"][0].tolist()
        differences = []
        for sequence in sequences:
            start = next(i for i in range(len(ids)) if ids[i : i + len(sequence)] == sequence)
            alone = model(torch.tensor([sequence]), use_cache=False).logits[0]
            differences.append((row[start : start + len(sequence)] - alone).abs().max().item())
    return differences


@pytest.fixture
def model(tiny_llama):
    datasets.disable_progress_bars()
    return tiny_llama("sdpa").eval()


def test_trl_wrapped_packing_lets_samples_attend_to_each_other(model):
    differences = _worst_difference_from_alone(model, "wrapped")
    assert sorted(differences)[0] <= 1e-5  # the first sample of the row sees nothing before it
    assert sum(d > 1e-2 for d in differences) == len(LENGTHS) - 1


def test_trl_bfd_packing_is_isolated_on_cpu_sdpa_only_through_a_full_row_mask(model):
    assert max(_worst_difference_from_alone(model, "bfd")) <= 1e-5
