"""`rfvideo` dispatch: the help lists every subcommand and imports no torch; user errors are one line
(the traceback only with --traceback / RFVIDEO_TRACEBACK=1); fit on the demo config trains (a
checkpoint at step 1 whose generator differs from the config's initial one); a misspelt YAML key gives
one clear error; `rfvideo generate` writes playable mp4s."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import av
import pytest
import torch

from rfvideo.cli import UsageError, main
from rfvideo.cli import app as cli_app
from rfvideo.cli.lightning import build_module
from rfvideo.cli.registry import COMMANDS, LIGHTNING_COMMANDS

CONFIG = str(Path(__file__).resolve().parents[1] / "experiments" / "demo" / "reward_forcing.yaml")


def test_help_lists_every_subcommand_with_one_line(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out.splitlines()
    for name in [*LIGHTNING_COMMANDS, *COMMANDS, "generate", "trajectories", "precompute", "vbench"]:
        rows = [line for line in out if line.split()[:1] == [name]]
        assert len(rows) == 1, (name, out)
        assert len(rows[0].split()) > 1  # a help text follows the name


def test_every_registered_module_has_the_subcommand_interface():
    import argparse
    import importlib

    for name, (module_path, text) in COMMANDS.items():
        module = importlib.import_module(module_path)
        parser = argparse.ArgumentParser(prog=f"rfvideo {name}")
        module.add_arguments(parser)
        assert callable(module.run) and text.strip(), name


def test_help_and_argument_errors_import_no_torch():
    code = (
        "import sys\n"
        "from rfvideo.cli import main\n"
        "assert main(['--help']) == 0\n"
        "bad = ['generate', '--config', 'x.yaml', '--prompt', 'p', '--out', 'o', '--num-frames', '0']\n"
        "for argv in (['generate', '--help'], ['precompute', 'latents', '--help'], bad):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in ('torch', 'lightning', 'diffusers', 'transformers') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout, r.stdout


def test_unknown_command_is_one_line(capsys):
    assert main(["genrate", "--config", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'genrate'" in err[0] and "generate" in err[0]


def _failing_command(monkeypatch, error: Exception) -> None:
    """Register a fake subcommand whose run raises `error`."""
    import types

    fake = types.ModuleType("rfvideo_fake_cmd")
    fake.add_arguments = lambda parser: parser.add_argument("--x", default="1")

    def run(args):
        raise error

    fake.run = run
    monkeypatch.setitem(sys.modules, "rfvideo_fake_cmd", fake)
    monkeypatch.setitem(cli_app.COMMANDS, "fake", ("rfvideo_fake_cmd", "a test command"))


def test_usage_error_prints_one_line_and_exits_2(monkeypatch, capsys):
    _failing_command(monkeypatch, UsageError("--x: bad value '7'"))
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    assert main(["fake"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --x: bad value '7'\n"


def test_library_value_error_prints_one_line_and_exits_1(monkeypatch, capsys):
    _failing_command(monkeypatch, ValueError("num_latent_frames must be positive, got 0"))
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    assert main(["fake"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "num_latent_frames must be positive, got 0" in err[0] and "--traceback" in err[0]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_traceback_flag_and_env_reraise(monkeypatch, how):
    _failing_command(monkeypatch, UsageError("--x: bad"))
    argv = ["fake"]
    if how == "flag":
        monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
        argv = ["--traceback", "fake"]
    else:
        monkeypatch.setenv("RFVIDEO_TRACEBACK", "1")
    with pytest.raises(UsageError, match="--x: bad"):
        main(argv)


def test_fit_trains_and_checkpoints_on_demo_config(tmp_path):
    argv = ["fit", "--config", CONFIG, "--trainer.max_steps=1", "--trainer.limit_val_batches=0",
            "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}"]  # fmt: skip
    assert main(argv) == 0
    ckpts = sorted(tmp_path.rglob("*.ckpt"))
    assert ckpts, list(tmp_path.rglob("*"))
    ckpt = torch.load(ckpts[-1], map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 1
    initial = build_module(CONFIG).state_dict()
    trained = ckpt["state_dict"]
    gen = [k for k in trained if k.startswith("generator.")]
    assert gen
    changed = [k for k in gen if not torch.equal(trained[k], initial[k])]
    assert changed, "one optimiser step left every generator weight unchanged"


def test_bad_yaml_key_gives_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(CONFIG).read_text().replace("ema_decay:", "ema_decy:"))
    assert main(["fit", "--config", str(bad), "--trainer.fast_dev_run=1"]) == 2
    err = capsys.readouterr().err
    assert "ema_decy" in err and "'model.init_args.ema_decay'" in err and len(err.strip().splitlines()) == 1


def test_build_module_does_not_warn_about_args_and_command_line(monkeypatch):
    # The console script passes arguments explicitly while sys.argv holds them too: LightningCLI
    # warned "not recommended to provide both args and command line arguments" on every generate.
    monkeypatch.setattr(sys, "argv", ["rfvideo", "generate", "--config", CONFIG])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = build_module(CONFIG)
    assert hasattr(module, "generate")
    assert not [w for w in caught if "args" in str(w.message) and "command line" in str(w.message)]


def test_generate_writes_mp4(tmp_path):
    out = tmp_path / "videos"
    assert (
        main(["generate", "--config", CONFIG, "--prompt", "a red square moving left", "--out", str(out)]) == 0
    )
    files = sorted(out.glob("*.mp4"))
    assert len(files) == 1
    with av.open(str(files[0])) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 9  # the demo world's 3 latent frames -> 1 + 2 x 4 pixel frames


def test_build_module_config_errors_are_one_line(tmp_path):
    with pytest.raises(UsageError, match=r"^--config: no such file: '.*nope\.yaml'$"):
        build_module(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(CONFIG).read_text().replace("ema_decay:", "ema_decy:"))
    with pytest.raises(UsageError) as e:
        build_module(bad)
    text = str(e.value)
    assert (
        "\n" not in text
        and "'model.init_args.ema_decy' is not accepted" in text
        and "Given value" not in text
    )


def test_generate_with_a_misspelt_config_key_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RFVIDEO_TRACEBACK", raising=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(CONFIG).read_text().replace("ema_decay:", "ema_decy:"))
    assert main(["generate", "--config", str(bad), "--prompt", "p", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: config") and "ema_decy" in err[0]
    assert "did you mean 'ema_decay'" in err[0]
