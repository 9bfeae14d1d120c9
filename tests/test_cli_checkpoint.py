"""Checkpoints given to the CLI: `load_module_checkpoint` loads a Lightning checkpoint strictly; a
missing, empty or truncated `--ckpt` / `--ckpt_path` is one `error:` line naming the file, reported
before any model is built."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rfvideo.cli import main
from rfvideo.cli.lightning import build_module, load_module_checkpoint

CONFIG = str(Path(__file__).resolve().parents[1] / "experiments" / "demo" / "reward_forcing.yaml")


@pytest.fixture(scope="module")
def module():
    return build_module(CONFIG)


def test_load_module_checkpoint_round_trip(module, tmp_path):
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(v.shape, generator=g).to(v.dtype) for k, v in module.state_dict().items()}
    torch.save({"state_dict": sd, "global_step": 7}, tmp_path / "m.ckpt")
    fresh = build_module(CONFIG)
    load_module_checkpoint(fresh, tmp_path / "m.ckpt")
    got = fresh.state_dict()
    assert all(torch.equal(got[k], sd[k]) for k in sd)


def test_load_module_checkpoint_refuses_no_state_dict(module, tmp_path):
    torch.save({"weights": {}}, tmp_path / "w.ckpt")
    with pytest.raises(ValueError, match=r"w\.ckpt' is not a Lightning checkpoint"):
        load_module_checkpoint(module, tmp_path / "w.ckpt")


def _truncated(tmp_path: Path, module) -> Path:
    full = tmp_path / "full.ckpt"
    torch.save({"state_dict": module.state_dict()}, full)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return cut


def test_load_module_checkpoint_names_truncated_file(module, tmp_path):
    from rfvideo.cli.errors import UsageError

    with pytest.raises(UsageError, match=r"cut\.ckpt' is truncated"):
        load_module_checkpoint(module, _truncated(tmp_path, module))


@pytest.mark.parametrize("kind", ["missing", "empty", "truncated"])
def test_generate_bad_ckpt_is_one_line_before_building(kind, module, tmp_path, capsys, monkeypatch):
    import rfvideo.cli.lightning as cli_lightning

    monkeypatch.setattr(cli_lightning, "build_module", lambda *a, **k: pytest.fail("built the module"))
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    path = {"missing": tmp_path / "nope.ckpt", "empty": tmp_path / "empty.ckpt"}.get(kind)
    if kind == "empty":
        path.write_bytes(b"")
    if kind == "truncated":
        path = _truncated(tmp_path, module)
    argv = ["generate", "--config", CONFIG, "--ckpt", str(path), "--prompt", "x", "--out", str(tmp_path)]
    code = main(argv)
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: --ckpt:") and path.name in err[0]
    assert ("no such file" if kind == "missing" else "truncated") in err[0]


def test_fit_truncated_ckpt_path_is_one_line(module, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    cut = _truncated(tmp_path, module)
    code = main(["fit", "--config", CONFIG, f"--ckpt_path={cut}", f"--trainer.default_root_dir={tmp_path}"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2
    assert err == [f"error: --ckpt_path: checkpoint {str(cut)!r} is truncated ({cut.stat().st_size} bytes; "
                   "its zip directory is missing)"]  # fmt: skip


def test_ckpt_path_keywords_are_not_files(tmp_path):
    import rfvideo.cli.lightning as cli_lightning

    class Parsed(Exception):
        pass

    class Probe(cli_lightning.RFVideoCLI):
        def before_instantiate_classes(self):
            raise Parsed

    with pytest.raises(Parsed):  # "last" is Lightning's keyword, not a missing file
        Probe(["fit", "--config", CONFIG, "--ckpt_path=last", f"--trainer.default_root_dir={tmp_path}"])
