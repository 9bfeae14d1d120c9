"""ShardWriter / ShardedTensorDataset: round trip, resume without rewriting, atomicity, bad input."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from rfvideo.data.shards import ShardedTensorDataset, ShardWriter


def _samples(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "prompt": f"prompt {i}",
            "trajectory": torch.randn(3, 2, 4, 2, 2, generator=g),  # (s f c h w)
            "trajectory_timesteps": torch.tensor([1000.0, 625.0, 0.0]),
            "seed": i,
        }
        for i in range(n)
    ]


def test_round_trip_across_shards_and_multiple_indexes(tmp_path):
    samples = _samples(7)
    with ShardWriter(tmp_path, shard_size=3, meta={"frames": (2,)}) as w:
        for i, s in enumerate(samples):
            assert w.add(s, key=str(i))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "index.json", "shard_00000.safetensors", "shard_00001.safetensors", "shard_00002.safetensors",
    ]  # fmt: skip
    # a second writer (another rank) with its own prefix and index joins the same directory
    extra = _samples(2, seed=1)
    with ShardWriter(tmp_path, shard_size=3, prefix="rank1", index_name="rank1.index.json") as w:
        for i, s in enumerate(extra):
            w.add(s, key=f"r1-{i}")
    ds = ShardedTensorDataset(tmp_path, cache_size=1)
    assert len(ds) == 9 and ds.meta == {"frames": [2]}
    expected = samples + extra  # "index.json" sorts before "rank1.index.json"
    for i in [0, 4, 8, 2, 6, -1]:
        got = ds[i]
        ref = expected[i]
        assert got["prompt"] == ref["prompt"] and got["seed"] == ref["seed"]
        torch.testing.assert_close(got["trajectory"], ref["trajectory"], rtol=0, atol=0)
        torch.testing.assert_close(got["trajectory_timesteps"], ref["trajectory_timesteps"], rtol=0, atol=0)
    assert len(ds._cache) == 1
    ds2 = pickle.loads(pickle.dumps(ds))  # goes to data-loader workers without open handles
    assert len(ds2._cache) == 0 and ds2[5]["prompt"] == "prompt 5"
    with pytest.raises(IndexError, match="9"):
        ds[9]


def test_resume_skips_finished_shards_and_drops_unflushed(tmp_path):
    samples = _samples(5)
    w = ShardWriter(tmp_path, shard_size=2)
    for i, s in enumerate(samples[:3]):
        w.add(s, key=str(i))
    # "crash": sample 2 is buffered, never flushed; shard 0 is finished
    del w
    mtime = (tmp_path / "shard_00000.safetensors").stat().st_mtime_ns
    w = ShardWriter(tmp_path, shard_size=2)
    assert w.done_keys == {"0", "1"} and w.num_written == 2
    added = [w.add(s, key=str(i)) for i, s in enumerate(samples)]
    w.close()
    assert added == [False, False, True, True, True]
    assert (tmp_path / "shard_00000.safetensors").stat().st_mtime_ns == mtime
    ds = ShardedTensorDataset(tmp_path)
    assert [ds[i]["prompt"] for i in range(len(ds))] == [s["prompt"] for s in samples]
    assert not list(tmp_path.glob("*.tmp"))
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["num_samples"] == 5 and [s["keys"] for s in index["shards"]] == [
        ["0", "1"],
        ["2", "3"],
        ["4"],
    ]


def test_resume_with_other_settings_raises(tmp_path):
    with ShardWriter(tmp_path, shard_size=2, meta={"height": 64}) as w:
        w.add(_samples(1)[0], key="a")
    with pytest.raises(ValueError, match="height"):
        ShardWriter(tmp_path, shard_size=2, meta={"height": 32})
    with pytest.raises(ValueError, match="shard_size"):
        ShardWriter(tmp_path, shard_size=3, meta={"height": 64})


def test_bad_input(tmp_path):
    w = ShardWriter(tmp_path, shard_size=4)
    w.add({"x": torch.zeros(2)}, key="a")
    with pytest.raises(ValueError, match="same fields"):
        w.add({"x": torch.zeros(3)}, key="b")
    with pytest.raises(ValueError, match="duplicate"):
        w.add({"x": torch.zeros(2)}, key="a")
    with pytest.raises(ValueError, match="list"):
        w.add({"x": [1, 2]}, key="c")
    with pytest.raises(ValueError, match="shard_size"):
        ShardWriter(tmp_path / "o", shard_size=0)
    with pytest.raises(ValueError, match="no index.json"):
        ShardedTensorDataset(tmp_path / "missing")
