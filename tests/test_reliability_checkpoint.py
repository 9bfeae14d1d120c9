"""Untrusted checkpoint files (issue 23, items 6, 7 and 14): a bit flip inside a tensor is caught by the
zip CRCs, a compressed archive that would inflate to far more than its size is refused from its directory
before anything is inflated, a pickle that needs code and a text file are one-line errors; recorded
SHA-256 digests of safetensors files are verified."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rfvideo.cli import main
from rfvideo.cli.errors import UsageError
from rfvideo.cli.preflight import preflight_checkpoint
from rfvideo.utils.checkpoint import load_checkpoint

CONFIG = str(Path(__file__).resolve().parents[1] / "experiments" / "demo" / "reward_forcing.yaml")


def _save(path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {"w": torch.randn(64, 64, generator=g), "b": torch.randn(64, generator=g)}
    torch.save({"state_dict": sd, "global_step": 3}, path)
    return sd


def _flip_inside(path: Path, member_suffix: str, nbytes: int = 64) -> None:
    """Flip `nbytes` bytes in the middle of the stored data of the member ending in `member_suffix`."""
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(member_suffix))
    data = bytearray(path.read_bytes())
    # local header: 30 fixed bytes + name + extra; the stored bytes follow
    name_len = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
    for i in range(start, start + nbytes):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_bit_flipped_tensor_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.ckpt"
    sd = _save(path)
    got = load_checkpoint(path)["state_dict"]
    assert all(torch.equal(got[k], sd[k]) for k in sd)  # an intact file loads as saved
    # the 64x64 float tensor is the largest data member
    with zipfile.ZipFile(path) as zf:
        largest = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    _flip_inside(path, largest.filename)
    with pytest.raises(ValueError, match=r"m\.ckpt' is corrupt: .*CRC") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def _bomb(path: Path, inflated_mib: int) -> None:
    """A torch archive rewritten with DEFLATE and one member of `inflated_mib` MiB of zeros."""
    src = tmp = io.BytesIO()
    torch.save({"state_dict": {"w": torch.ones(4)}}, tmp)
    with (
        zipfile.ZipFile(io.BytesIO(src.getvalue())) as zin,
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zout,
    ):
        prefix = zin.infolist()[0].filename.split("/")[0]
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info), compress_type=zipfile.ZIP_DEFLATED)
        with zout.open(f"{prefix}/data/99", "w", force_zip64=True) as fh:
            block = bytes(2**20)
            for _ in range(inflated_mib):
                fh.write(block)


def test_compressed_bomb_is_refused_from_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.ckpt"
    _bomb(path, 256)
    assert path.stat().st_size < 2 * 2**20
    with pytest.raises(ValueError, match=r"bomb\.ckpt' declares .* MiB of contents in a .*refusing"):
        load_checkpoint(path)
    with pytest.raises(UsageError, match=r"bomb\.ckpt' declares"):
        preflight_checkpoint(path)


def test_refused_pickle_and_text_file_are_one_line_errors(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Evil()}, evil)
    with pytest.raises(pickle.UnpicklingError) as info:  # still an UnpicklingError (the documented type)
        load_checkpoint(evil)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
    assert "refused" in str(info.value) and "system" in str(info.value)  # posix.system on Linux

    text = tmp_path / "notes.ckpt"
    text.write_text("these are my training notes\n" * 20)
    with pytest.raises(ValueError, match=r"notes\.ckpt' is not a torch checkpoint") as info:
        load_checkpoint(text)
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match=r"notes\.ckpt' is not a torch checkpoint"):
        preflight_checkpoint(text)

    # through the console script: `fit --ckpt_path` with the text file is one line, before any training
    code = main(["fit", "--config", CONFIG, "--ckpt_path", str(text)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not a torch checkpoint" in err, err


def test_sha256_digests_are_recorded_and_verified(tmp_path: Path) -> None:
    from rfvideo.utils.digests import record_digests, verify_digests

    g = torch.Generator().manual_seed(0)
    (tmp_path / "transformer").mkdir()
    save_file({"a": torch.randn(8, 8, generator=g)}, tmp_path / "transformer" / "model.safetensors")
    save_file({"b": torch.randn(4, generator=g)}, tmp_path / "vae.safetensors")
    index = record_digests(tmp_path)
    assert sorted(index) == ["transformer/model.safetensors", "vae.safetensors"]
    assert all(len(v) == 64 for v in index.values())
    json.dumps(index)  # fit for the folder's JSON index
    verify_digests(tmp_path, index)
    # one flipped byte in the middle of a tensor
    path = tmp_path / "transformer" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) - 20] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"transformer/model\.safetensors.*SHA-256"):
        verify_digests(tmp_path, index)
    with pytest.raises(ValueError, match="missing"):
        verify_digests(tmp_path, {**index, "text_encoder/model.safetensors": "0" * 64})
    for bad in ("../x.safetensors", "/etc/passwd"):
        with pytest.raises(ValueError, match="outside"):
            verify_digests(tmp_path, {bad: "0" * 64})
    with pytest.raises(ValueError, match="hex"):
        verify_digests(tmp_path, {"vae.safetensors": "xyz"})
