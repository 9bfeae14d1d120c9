"""Preflight: a config's frame count, learning rate, input paths, RoPE length and embedding store are
checked before any class is built (so before any weights load); each problem is named in one line.

The RoPE case points `load_causal_wan` at a folder holding only `config.json`: had the check not run,
loading would fail later with a missing-weights error instead."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from rfvideo.cli import main
from rfvideo.cli.preflight import config_problems

CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "demo" / "reward_forcing.yaml"
BASE = yaml.safe_load(CONFIG.read_text())


def _write(tmp_path: Path, cfg: dict) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _fit_error(tmp_path: Path, cfg: dict, capsys, monkeypatch, *extra: str) -> str:
    """Run `rfvideo fit` on `cfg`; it must stop in preflight: exit 2 and one `error:` line."""
    import rfvideo.cli.lightning as cli_lightning

    def no_build(self):
        pytest.fail("classes were instantiated despite a bad config")

    monkeypatch.setattr(cli_lightning.RFVideoCLI, "instantiate_classes", no_build)
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    code = main(["fit", "--config", _write(tmp_path, cfg), f"--trainer.default_root_dir={tmp_path}", *extra])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(err) == 1, err
    return err[0]


def test_demo_config_has_no_problems():
    from lightning.pytorch.cli import LightningCLI  # noqa: F401 (the parser below needs Lightning)

    class Probe(Exception):
        pass

    import rfvideo.cli.lightning as cli_lightning

    seen = {}

    class Capture(cli_lightning.RFVideoCLI):
        def before_instantiate_classes(self):
            seen["problems"] = config_problems(self.config[self.config.subcommand])
            raise Probe

    with pytest.raises(Probe):
        Capture(["fit", "--config", str(CONFIG)])
    assert seen["problems"] == []


def test_frames_not_a_multiple_of_the_chunk(tmp_path, capsys, monkeypatch):
    cfg = copy.deepcopy(BASE)
    cfg["model"]["init_args"]["generator"]["init_args"]["num_frames_per_chunk"] = 2
    cfg["model"]["init_args"]["num_latent_frames"] = 3
    err = _fit_error(tmp_path, cfg, capsys, monkeypatch)
    assert "num_latent_frames=3 is not a multiple of the generator's num_frames_per_chunk=2" in err


@pytest.mark.parametrize("lr", [0.0, -1.0e-4, ".nan", ".inf"])
def test_bad_learning_rate(tmp_path, capsys, monkeypatch, lr):
    cfg = copy.deepcopy(BASE)
    text = _write(tmp_path, cfg)
    bad = Path(text).read_text().replace("lr: 0.0001", f"lr: {lr}")
    assert bad != Path(text).read_text()
    err_cfg = yaml.safe_load(bad)
    err = _fit_error(tmp_path, err_cfg, capsys, monkeypatch)
    assert "optimizer.init_args.lr must be a finite number > 0" in err


def test_missing_paths_are_all_named(tmp_path, capsys, monkeypatch):
    cfg = copy.deepcopy(BASE)
    cfg["model"]["init_args"]["generator"] = {
        "class_path": "rfvideo.modules.components.load_causal_wan",
        "init_args": {
            "path": str(tmp_path / "no_wan"),
            "init_checkpoint": str(tmp_path / "stage1.ckpt"),
            "num_frames_per_chunk": 1,
        },  # fmt: skip
    }
    cfg["data"] = {"class_path": "rfvideo.data.RFVideoDataModule",
                   "init_args": {"train_prompts": str(tmp_path / "prompts.txt")}}  # fmt: skip
    err = _fit_error(tmp_path, cfg, capsys, monkeypatch)
    assert f"generator.init_args.path: no such folder: '{tmp_path / 'no_wan'}'" in err
    assert f"generator.init_args.init_checkpoint: no such file or folder: '{tmp_path / 'stage1.ckpt'}'" in err
    assert f"data.init_args.train_prompts: no such file or folder: '{tmp_path / 'prompts.txt'}'" in err


def _config_only_wan(tmp_path: Path, rope_max_seq_len: int) -> Path:
    """A Wan folder whose transformer/ holds only config.json (no weights)."""
    from helpers import tiny_wan_config

    folder = tmp_path / "wan" / "transformer"
    folder.mkdir(parents=True)
    cfg = {"_class_name": "WanTransformer3DModel", **tiny_wan_config(rope_max_seq_len=rope_max_seq_len)}
    (folder / "config.json").write_text(json.dumps(cfg))
    return tmp_path / "wan"


@pytest.mark.parametrize(
    "frames,size,what", [(6, [4, 4], "latent frames need 6"), (3, [4, 20], "latent width need 10")]
)
def test_rope_too_short_for_the_request(tmp_path, capsys, monkeypatch, frames, size, what):
    wan = _config_only_wan(tmp_path, rope_max_seq_len=5)
    cfg = copy.deepcopy(BASE)
    cfg["model"]["init_args"]["generator"] = {
        "class_path": "rfvideo.modules.components.load_causal_wan",
        "init_args": {"path": str(wan), "num_frames_per_chunk": 3},
    }
    cfg["model"]["init_args"]["num_latent_frames"] = frames
    cfg["model"]["init_args"]["latent_size"] = size
    err = _fit_error(tmp_path, cfg, capsys, monkeypatch)
    assert f"{what} RoPE positions but {wan / 'transformer' / 'config.json'} has rope_max_seq_len=5" in err


def test_rope_long_enough_passes(tmp_path):
    wan = _config_only_wan(tmp_path, rope_max_seq_len=6)
    cfg = copy.deepcopy(BASE)
    args = {"path": str(wan), "subfolder": "transformer", "num_frames_per_chunk": 3}
    gen = {"class_path": "rfvideo.modules.components.load_causal_wan", "init_args": args}
    cfg["model"]["init_args"].update(generator=gen, num_latent_frames=6, latent_size=[4, 12])
    assert config_problems(cfg) == []


def test_rope_rule_is_the_models_relative_rope_with_a_window_needs_only_the_window(
    tmp_path, capsys, monkeypatch
):
    """`fit`'s preflight applies the model's own length rule (`CausalOptions.rope_frames_needed`): with
    relative RoPE and a rolling window of 4 frames, 21 latent frames need 4 positions, not 21, so a table of 5
    passes; the same request with absolute RoPE is refused, naming the count."""
    from rfvideo.models.causal_options import CausalOptions

    wan = _config_only_wan(tmp_path, rope_max_seq_len=5)
    cfg = copy.deepcopy(BASE)
    causal = {"local_attn_size": 4, "sink_size": 1, "rope_mode": "relative", "num_frames_per_chunk": 3}
    gen = {
        "class_path": "rfvideo.modules.components.load_causal_wan",
        "init_args": {"path": str(wan), **causal},
    }
    cfg["model"]["init_args"].update(generator=gen, num_latent_frames=21, latent_size=[4, 4])
    assert CausalOptions(**causal).rope_frames_needed(21) == 4  # the model's rule, which the check follows
    import rfvideo.cli.lightning as cli_lightning

    class Passed(Exception):
        pass

    def passed(self):
        raise Passed

    with monkeypatch.context() as m:
        m.setattr(cli_lightning.RFVideoCLI, "instantiate_classes", passed)
        with pytest.raises(Passed):  # the preflight let it through to building
            main(["fit", "--config", _write(tmp_path, cfg), f"--trainer.default_root_dir={tmp_path}"])
    gen["init_args"]["rope_mode"] = "absolute"
    err = _fit_error(tmp_path, cfg, capsys, monkeypatch)
    assert "latent frames need 21 RoPE positions" in err and "rope_max_seq_len=5" in err


@pytest.fixture()
def store(tmp_path):
    """A real embedding store (tiny umT5) of two prompts."""
    from rfvideo.models import precompute_prompt_embeddings
    from rfvideo.models.tiny import tiny_text_encoder

    out = tmp_path / "emb"
    precompute_prompt_embeddings(tiny_text_encoder(), ["a red square", "a blue  circle"], out, progress=False)
    return out


def test_prompts_missing_from_the_store(tmp_path, store, capsys, monkeypatch):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red square\na blue circle\na green triangle\nwaves &amp; rocks\n")
    cfg = copy.deepcopy(BASE)
    cfg["data"] = {"class_path": "rfvideo.data.RFVideoDataModule",
                   "init_args": {"train_prompts": str(prompts), "prompt_embeddings": str(store)}}  # fmt: skip
    err = _fit_error(tmp_path, cfg, capsys, monkeypatch)
    assert (
        f"2 of the prompts in '{prompts}' are not in the store '{store}' (first: 'a green triangle')" in err
    )
    # the same prompts, cleaned as the encoder sees them, are all found
    prompts.write_text("a red square\n  a blue circle \n")
    assert config_problems(cfg) == []


def test_generate_checks_the_requested_frames_before_building(tmp_path, capsys, monkeypatch):
    import rfvideo.cli.lightning as cli_lightning

    monkeypatch.setattr(cli_lightning.RFVideoCLI, "instantiate_classes", lambda self: pytest.fail("built"))
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    wan = _config_only_wan(tmp_path, rope_max_seq_len=5)
    cfg = copy.deepcopy(BASE)
    cfg["model"]["init_args"]["generator"] = {
        "class_path": "rfvideo.modules.components.load_causal_wan",
        "init_args": {"path": str(wan), "num_frames_per_chunk": 3},
    }
    cfg["model"]["init_args"]["num_latent_frames"] = 3
    argv = ["generate", "--config", _write(tmp_path, cfg), "--prompt", "p", "--out", str(tmp_path / "o")]
    assert main([*argv, "--num-frames", "13"]) == 2  # 4 latent frames
    assert (
        "--num-frames=13 is 4 latent frames, not a multiple of the generator's chunk size 3"
        in capsys.readouterr().err
    )
    assert main([*argv, "--num-frames", "21"]) == 2  # 6 latent frames, a table of 5
    err = capsys.readouterr().err
    assert "(6 latent frames) needs 6 RoPE positions" in err and "rope_max_seq_len=5" in err
    # relative RoPE with a window needs only the window's positions: the same length passes the check
    cfg["model"]["init_args"]["generator"]["init_args"] |= {
        "local_attn_size": 4, "sink_size": 1, "rope_mode": "relative", "num_frames_per_chunk": 3,
    }  # fmt: skip
    argv[2] = _write(tmp_path, cfg)
    monkeypatch.setattr(
        "rfvideo.cli.generate.load_pipeline", lambda args: pytest.fail("passed the checks: built")
    )
    with pytest.raises(pytest.fail.Exception, match="passed the checks"):
        main([*argv, "--num-frames", "21"])
