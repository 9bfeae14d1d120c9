"""`load_checkpoint`: a checkpoint loads as `torch.load` gives it; a missing, empty or cut-off file is a
ValueError naming the file and saying it is truncated; a pickle that runs code is still refused."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from rfvideo.utils.checkpoint import load_checkpoint


def _ckpt(g: torch.Generator) -> dict:
    return {"state_dict": {"w": torch.randn(8, 4, generator=g), "b": torch.randn(4, generator=g)}, "epoch": 3}


def test_loads_what_torch_saved(tmp_path):
    want = _ckpt(torch.Generator().manual_seed(0))
    torch.save(want, tmp_path / "a.ckpt")
    got = load_checkpoint(tmp_path / "a.ckpt")
    assert got["epoch"] == 3
    for k in want["state_dict"]:
        assert torch.equal(got["state_dict"][k], want["state_dict"][k])


def test_missing_and_directory(tmp_path):
    with pytest.raises(ValueError, match=r"checkpoint not found: .*nope\.ckpt"):
        load_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(ValueError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_empty_file_is_truncated(tmp_path):
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"'.*empty\.ckpt' is truncated: the file is empty"):
        load_checkpoint(tmp_path / "empty.ckpt")


@pytest.mark.parametrize("zip_format", [True, False])
@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_cut_file_is_truncated(tmp_path, zip_format, keep):
    full = tmp_path / "full.ckpt"
    torch.save(_ckpt(torch.Generator().manual_seed(1)), full, _use_new_zipfile_serialization=zip_format)
    data = full.read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match=r"'.*cut\.ckpt' is truncated"):
        load_checkpoint(cut)


class _Payload:
    """Unpickling this would create a file (a stand-in for arbitrary code)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_code_running_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "x": _Payload(str(marker))}, bad)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="bad.ckpt"):
        load_checkpoint(bad)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(os.urandom(0) + bytes(range(256)) * 4)
    with pytest.raises((ValueError, pickle.UnpicklingError), match="junk.ckpt"):
        load_checkpoint(junk)


def test_weight_loaders_name_a_truncated_file(tmp_path):
    """Every loader that reads a torch checkpoint goes through load_checkpoint (item 12 of issue 11)."""
    from helpers import tiny_wan_config
    from rfvideo.eval.backbones import _aesthetic_head
    from rfvideo.models import CausalWanTransformer
    from rfvideo.models.convert import load_original_checkpoint
    from rfvideo.modules.components import load_causal_wan

    g = torch.Generator().manual_seed(0)
    full = tmp_path / "full.ckpt"
    torch.save(_ckpt(g), full)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut\.ckpt.*truncated"):
        _aesthetic_head(str(cut))
    with pytest.raises(ValueError, match=r"cut\.ckpt.*truncated"):
        load_original_checkpoint(cut, model=CausalWanTransformer(**tiny_wan_config()))
    wan = tmp_path / "wan"
    CausalWanTransformer(**tiny_wan_config()).save_pretrained(wan / "transformer")
    with pytest.raises(ValueError, match=r"cut\.ckpt.*truncated"):
        load_causal_wan(str(wan), init_checkpoint=str(cut))
