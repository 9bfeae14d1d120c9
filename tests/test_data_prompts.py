"""Prompt files (txt / jsonl / csv), empty-prompt handling, collation and the embedding join."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from rfvideo.data.collate import IndexedDataset, collate_samples
from rfvideo.data.prompts import PromptDataset, load_prompts

PROMPTS = ["a cat on a skateboard", "sunset over the sea, drone shot", 'a "quoted", comma prompt']


def _write(tmp_path, fmt, prompts, field="prompt"):
    path = tmp_path / f"prompts.{fmt}"
    if fmt == "txt":
        path.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    elif fmt == "jsonl":
        lines = [json.dumps({field: p, "id": i}) if p is not None else "" for i, p in enumerate(prompts)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=["id", field])
            w.writeheader()
            for i, p in enumerate(prompts):
                w.writerow({"id": i, field: p})
    return path


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv"])
def test_all_formats_read_the_same_prompts(tmp_path, fmt):
    loaded = load_prompts(_write(tmp_path, fmt, PROMPTS))
    assert loaded.prompts == PROMPTS and loaded.num_skipped == 0


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_configurable_field(tmp_path, fmt):
    path = _write(tmp_path, fmt, PROMPTS, field="caption")
    assert load_prompts(path, field="caption").prompts == PROMPTS
    with pytest.raises(ValueError, match="'prompt'"):
        load_prompts(path)


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv"])
def test_empty_prompts_skipped_with_count_or_rejected(tmp_path, fmt):
    raw = [PROMPTS[0], "", "   ", PROMPTS[1]]
    path = _write(tmp_path, fmt, raw)
    with pytest.warns(UserWarning, match="skipped 2 empty"):
        loaded = load_prompts(path)
    assert loaded.prompts == PROMPTS[:2] and loaded.num_skipped == 2
    with pytest.raises(ValueError, match="empty prompt"):
        load_prompts(path, on_empty="error")


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match="unsupported"):
        (tmp_path / "p.parquet").write_text("x")
        load_prompts(tmp_path / "p.parquet")
    with pytest.raises(ValueError, match="not found"):
        load_prompts(tmp_path / "none.txt")
    (tmp_path / "bad.jsonl").write_text('{"prompt": 3}\n')
    with pytest.raises(ValueError, match="must be a string"):
        load_prompts(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="prompt 1"):
        PromptDataset(["ok", " "])


class _FakeStore:
    """Stand-in with PromptEmbeddingStore's `get` contract: deterministic per-prompt embeddings."""

    def get(self, prompts):
        embeds = torch.stack([torch.full((4, 3), float(len(p))) for p in prompts])  # (b n d)
        mask = torch.ones(len(prompts), 4, dtype=torch.bool)
        return embeds, mask


def test_collate_batch_format_and_embedding_join():
    g = torch.Generator().manual_seed(0)
    ts = torch.tensor([1000.0, 937.5, 0.0])
    ds = IndexedDataset(
        [
            {"prompt": p, "trajectory": torch.randn(3, 2, 4, 2, 2, generator=g), "trajectory_timesteps": ts}
            for p in PROMPTS
        ]
    )
    samples = [ds[2], ds[0]]
    batch = collate_samples(samples, embeddings=_FakeStore())
    assert batch["prompt"] == [PROMPTS[2], PROMPTS[0]]
    assert batch["index"].tolist() == [2, 0]
    assert batch["trajectory"].shape == (2, 3, 2, 4, 2, 2)
    torch.testing.assert_close(batch["trajectory"][1], samples[1]["trajectory"])
    assert batch["trajectory_timesteps"].shape == (3,)
    assert batch["prompt_embeds"][:, 0, 0].tolist() == [len(PROMPTS[2]), len(PROMPTS[0])]
    bad = dict(samples[1], trajectory_timesteps=torch.tensor([1000.0, 500.0, 0.0]))
    with pytest.raises(ValueError, match="trajectory_timesteps"):
        collate_samples([samples[0], bad])


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv"])
def test_non_utf8_file_names_file_and_line(tmp_path, fmt):
    path = _write(tmp_path, fmt, [PROMPTS[0], "un café crème", PROMPTS[1]])
    shown = json.dumps("café crème")[1:-1] if fmt == "jsonl" else "café crème"  # json escapes to \u00e9
    raw = path.read_bytes().replace(shown.encode(), "café crème".encode("latin-1"))
    assert raw != path.read_bytes()
    path.write_bytes(raw)
    line = 3 if fmt == "csv" else 2  # the csv header is line 1
    with pytest.raises(ValueError, match=rf"prompts\.{fmt}:{line}: not UTF-8 text \(byte 0xe9 at column"):
        load_prompts(path)


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv"])
def test_utf8_bom_is_dropped(tmp_path, fmt):
    path = _write(tmp_path, fmt, PROMPTS)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    loaded = load_prompts(path)
    assert loaded.prompts == PROMPTS
    assert not loaded.prompts[0].startswith("\ufeff")
