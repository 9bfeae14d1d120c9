"""ResumableBatchSampler: exact coverage over ranks x workers, tail handling, determinism, resume."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from rfvideo.data.collate import IndexedDataset, collate_samples
from rfvideo.data.datamodule import ResumableLoader
from rfvideo.data.prompts import PromptDataset
from rfvideo.data.sampler import ResumableBatchSampler


def _rank_batches(n, world, *, batch_size, epoch=0, resume=None, **kw):
    out = []
    for r in range(world):
        s = ResumableBatchSampler(n, batch_size=batch_size, num_replicas=world, rank=r, **kw)
        s.set_epoch(epoch)
        if resume is not None:
            s.set_resume(*resume)
        out.append(list(s))
    return out


def _worker_split(batches, num_workers):
    """What each data-loader worker receives: DataLoader hands batch j to worker j % num_workers."""
    return [batches[w::num_workers] for w in range(num_workers)]


@pytest.mark.parametrize("shuffle", [True, False])
def test_two_ranks_two_workers_cover_every_sample_exactly_once(shuffle):
    n, world, bs = 48, 2, 4  # divisible by world * batch_size
    per_rank = _rank_batches(n, world, batch_size=bs, shuffle=shuffle, seed=3)
    seen = [i for batches in per_rank for worker in _worker_split(batches, 2) for b in worker for i in b]
    assert sorted(seen) == list(range(n))
    assert len({len(b) for batches in per_rank for b in batches}) == 1
    assert len(per_rank[0]) == len(per_rank[1]) == n // (world * bs)


def test_tail_padding_by_wrap_and_drop_last():
    n, world, bs = 13, 2, 3  # 6 per global step: 2 full steps + 1 leftover
    per_rank = _rank_batches(n, world, batch_size=bs, seed=0)
    seen = Counter(i for batches in per_rank for b in batches for i in b)
    assert set(seen) == set(range(n)) and sum(seen.values()) == 18  # padded to 3 steps
    perm = ResumableBatchSampler(n, batch_size=bs, seed=0).permutation(0)
    # the 5 padded positions repeat the first 5 of the epoch order
    assert sorted(i for i, c in seen.items() if c == 2) == sorted(perm[:5])
    assert all(len(b) == bs for batches in per_rank for b in batches)
    dropped = _rank_batches(n, world, batch_size=bs, seed=0, drop_last=True)
    seen = [i for batches in dropped for b in batches for i in b]
    assert len(seen) == len(set(seen)) == 12 and set(seen) == set(perm[:12])
    assert len(ResumableBatchSampler(n, batch_size=bs, num_replicas=2, rank=1)) == 3


def test_shuffle_is_deterministic_per_seed_and_epoch():
    s = ResumableBatchSampler(50, batch_size=5, seed=7)
    p0, p1 = s.permutation(0), s.permutation(1)
    assert p0 == ResumableBatchSampler(50, batch_size=5, seed=7).permutation(0)
    assert sorted(p0) == list(range(50)) and p0 != p1 and p0 != list(range(50))
    assert p0 != ResumableBatchSampler(50, batch_size=5, seed=8).permutation(0)
    # the order equals torch.randperm of the documented seed (a reference, not our code again)
    ref = torch.randperm(50, generator=torch.Generator().manual_seed(7 * 2**31 + 1)).tolist()
    assert p1 == ref
    s.set_epoch(1)
    assert [i for b in s for i in b] == p1


@pytest.mark.parametrize("new_world,new_bs", [(2, 3), (3, 2), (1, 4)])
def test_resume_mid_epoch_yields_only_the_remaining_samples(new_world, new_bs):
    n, world, bs, epoch = 36, 2, 3, 2
    full = _rank_batches(n, world, batch_size=bs, epoch=epoch, seed=1)
    steps_done = 4
    consumed_set = [i for batches in full for b in batches[:steps_done] for i in b]
    consumed = steps_done * world * bs
    # resume with possibly another world / batch size: the rest of the epoch, each sample once
    rest = _rank_batches(n, new_world, batch_size=new_bs, epoch=epoch, seed=1, resume=(epoch, consumed))
    remaining = [i for batches in rest for b in batches for i in b]
    assert len(remaining) == len(set(remaining)) == n - consumed
    assert set(remaining) | set(consumed_set) == set(range(n))
    assert not set(remaining) & set(consumed_set)
    # the next epoch starts from the beginning again
    nxt = _rank_batches(n, new_world, batch_size=new_bs, epoch=epoch + 1, seed=1, resume=(epoch, consumed))
    assert sorted(i for batches in nxt for b in batches for i in b) == list(range(n))


def test_resume_with_the_same_setup_equals_the_uninterrupted_tail_including_padding():
    n, world, bs = 13, 2, 3  # padded epoch: 3 steps of 6
    full = _rank_batches(n, world, batch_size=bs, epoch=1, seed=4)
    for steps_done in range(4):
        rest = _rank_batches(n, world, batch_size=bs, epoch=1, seed=4, resume=(1, steps_done * world * bs))
        assert rest == [batches[steps_done:] for batches in full]


def test_resume_with_a_step_size_that_does_not_divide_pads_from_the_remaining_samples():
    n = 36
    consumed = 24
    full_order = ResumableBatchSampler(n, batch_size=3, num_replicas=2, seed=1).epoch_order(0)
    rest = _rank_batches(n, 1, batch_size=5, seed=1, resume=(0, consumed))
    remaining = [i for batches in rest for b in batches for i in b]
    assert len(remaining) == 15  # 12 left, padded to 3 batches of 5 with the first 3 of them
    assert remaining == full_order[consumed:] + full_order[consumed : consumed + 3]


def test_real_dataloader_two_workers_covers_each_sample_once():
    prompts = [f"p{i}" for i in range(16)]
    ds = IndexedDataset(PromptDataset(prompts))
    got = []
    for rank in range(2):
        sampler = ResumableBatchSampler(16, batch_size=2, num_replicas=2, rank=rank, seed=5)
        loader = ResumableLoader(ds, sampler, collate_samples, num_workers=2, epoch_fn=lambda: 1)
        batches = list(loader)
        assert len(batches) == len(loader) == 4
        # batches come in sampler order (workers are read round-robin)
        assert [b["index"].tolist() for b in batches] == list(sampler)
        for b in batches:
            assert b["prompt"] == [prompts[i] for i in b["index"].tolist()]
            got.extend(b["index"].tolist())
    assert sorted(got) == list(range(16))


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        ResumableBatchSampler(10, batch_size=2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="batch_size"):
        ResumableBatchSampler(10, batch_size=0)
    with pytest.raises(ValueError, match="drop_last"):
        ResumableBatchSampler(3, batch_size=2, num_replicas=2, drop_last=True)
    with pytest.raises(ValueError, match="consumed"):
        ResumableBatchSampler(10, batch_size=2).set_resume(0, -1)
