import pytest
import torch
from lw_train import BinDataset, PackedCollator, PaddedCollator
from lw_train.collators import CollatorError, block_diagonal_mask

SAMPLES = [
    {"input_ids": [1, 2, 3], "labels": [-100, 2, 3]},
    {"input_ids": [4, 5, 6, 7, 8], "labels": [4, 5, 6, 7, 8]},
    {"input_ids": [9, 10], "labels": [-100, 10]},
]


def test_padded_rounds_up_to_eight_and_masks_padding():
    batch = PaddedCollator(pad_token_id=0)(SAMPLES)
    assert batch["input_ids"].shape == (3, 8)
    assert batch["attention_mask"].sum(1).tolist() == [3, 5, 2]
    assert batch["labels"][0].tolist() == [-100, 2, 3] + [-100] * 5
    assert batch["input_ids"][2].tolist() == [9, 10] + [0] * 6


def test_packed_row_restarts_positions_and_blocks_cross_sample_targets():
    batch = PackedCollator()(SAMPLES)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 4, 0, 1]]
    # the first token of each sample is never a target of the previous sample's last token
    assert batch["labels"].tolist() == [[-100, 2, 3, -100, 5, 6, 7, 8, -100, 10]]
    assert batch["cu_seq_lens_q"].dtype == torch.int32
    assert batch["cu_seq_lens_q"].tolist() == batch["cu_seq_lens_k"].tolist() == [0, 3, 8, 10]
    assert batch["max_length_q"] == batch["max_length_k"] == 5
    assert all(t.is_contiguous() for t in batch.values() if isinstance(t, torch.Tensor))


def test_packed_pads_with_a_loss_free_dummy_segment():
    batch = PackedCollator(pad_token_id=0, pad_to_multiple_of=64)(SAMPLES)
    assert batch["input_ids"].shape == (1, 64)
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 8, 10, 64]
    assert (batch["labels"][0, 10:] == -100).all()
    assert batch["position_ids"][0, 10:].tolist() == list(range(54))


def test_fixed_length_gives_static_shapes_and_refuses_overflow():
    collate = PackedCollator(fixed_length=16)
    assert collate(SAMPLES[:1])["input_ids"].shape == collate(SAMPLES)["input_ids"].shape == (1, 16)
    with pytest.raises(CollatorError, match="fixed_length is 8"):
        PackedCollator(fixed_length=8)(SAMPLES)


def test_block_mask_is_causal_within_samples_only():
    mask = block_diagonal_mask(torch.tensor([2, 3]))
    allowed = (mask[0, 0] == 0).int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 1, 1, 1],
    ]
    assert PackedCollator(block_mask=True)(SAMPLES)["attention_mask"].shape == (1, 1, 10, 10)


def test_bins_from_a_dataset_collate_like_their_samples():
    dataset = BinDataset(SAMPLES, [[2, 0], [1]])
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, collate_fn=PackedCollator())
    first, second = list(loader)
    assert first["input_ids"].tolist() == [[9, 10, 1, 2, 3]]
    assert second["cu_seq_lens_q"].tolist() == [0, 5]


def test_numpy_and_tensor_inputs_are_accepted():
    np = pytest.importorskip("numpy")
    features = [
        {"input_ids": np.array([1, 2], dtype=np.int32), "labels": np.array([1, 2], dtype=np.int32)},
        {"input_ids": torch.tensor([3]), "labels": torch.tensor([3])},
    ]
    assert PackedCollator()(features)["input_ids"].tolist() == [[1, 2, 3]]


def test_misaligned_labels_name_the_sample():
    with pytest.raises(CollatorError, match="sample 1: 2 input_ids but 1 labels"):
        PackedCollator()([SAMPLES[0], {"input_ids": [1, 2], "labels": [1]}])
