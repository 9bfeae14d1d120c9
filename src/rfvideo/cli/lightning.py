"""LightningCLI for `rfvideo fit|validate|test|predict`, and the same config machinery for other
subcommands: `build_module` (a config's LightningModule, nothing run) and `load_module_checkpoint`.

Before any class is built, `rfvideo.cli.preflight` checks the parsed config (frame counts, learning
rate, every path it names, the checkpoint), so a typo costs seconds, not a model load.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from rfvideo.cli.config_errors import config_error_line
from rfvideo.cli.errors import UsageError
from rfvideo.cli.preflight import CKPT_KEYWORDS, preflight_checkpoint, preflight_config
from rfvideo.utils.checkpoint import load_checkpoint

__all__ = ["RFVideoCLI", "build_module", "load_module_checkpoint", "run_lightning"]


class RFVideoCLI(LightningCLI):
    """LightningCLI over any LightningModule / DataModule `class_path`, with preflight checks.

    Args:
        args: Command-line style arguments (always given: `rfvideo.cli.main` passes them).
        run: Whether to run the subcommand (`False`: build the classes only).
        model_only: With `run=False`, skip building the Trainer (and its callbacks, loggers).
    """

    def __init__(self, args: list[str], *, run: bool = True, model_only: bool = False) -> None:
        self._model_only = model_only and not run
        super().__init__(
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            save_config_kwargs={"overwrite": True},
            # Raise parse errors (made one line naming the key in `parse_arguments`) rather than print
            # the LightningCLI usage and a dump of the whole config.
            parser_kwargs={"exit_on_error": False},
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        # rfvideo.cli.main always passes the arguments explicitly (it strips --traceback first), so
        # LightningCLI's warning about "args and command line arguments" would fire on every run.
        try:
            self.config = parser.parse_args(args)
        except argparse.ArgumentError as e:
            raise UsageError(config_error_line(str(e), _option_strings(parser, args))) from None
        sub = self.config.get("subcommand")
        cfg = self.config[sub] if sub else self.config
        _refuse_trainer_level_optimization(cfg)
        # Before LightningCLI itself torch.loads --ckpt_path to read its hyperparameters.
        ckpt = cfg.get("ckpt_path") if sub else None
        if ckpt and str(ckpt) not in CKPT_KEYWORDS:  # "last" / "best": Lightning finds the file
            preflight_checkpoint(ckpt, option="--ckpt_path")

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--run_dir",
            type=str | None,
            default=None,
            help="the run's folder (logs, checkpoints); default: trainer.default_root_dir. Logs go to "
            "<run_dir>/lightning_logs/run, so `--ckpt_path last` resumes there and the curves continue",
        )

    def before_instantiate_classes(self) -> None:
        sub = self.config.get("subcommand")
        cfg = self.config[sub] if sub else self.config
        preflight_config(cfg)
        if sub == "fit":
            stable_run_folder(cfg)

    def instantiate_classes(self) -> None:
        if not self._model_only:
            super().instantiate_classes()
            return
        self.config_init = self.parser.instantiate_classes(self.config)
        self.datamodule = self._get(self.config_init, "data")
        self.model = self._get(self.config_init, "model")


def _option_strings(parser: Any, args: Any) -> list[str]:
    """The `--options` of the subcommand in `args` (or of `parser` itself), for typo suggestions."""
    action = getattr(parser, "_subcommands_action", None)
    names = getattr(action, "_name_parser_map", {}) if action is not None else {}
    sub = next((a for a in (args or []) if a in names), None)
    target = names[sub] if sub is not None else parser
    return [o for o in getattr(target, "_option_string_actions", {}) if o.startswith("--")]


RUN_VERSION = "run"  # the logger version of every run: one folder per root, not version_N per start


def stable_run_folder(cfg: Any) -> Path | None:
    """Give a fit a stable folder, `<root>/lightning_logs/run` (root: `--run_dir` or the trainer's
    `default_root_dir`): its TensorBoard logger gets `version="run"` (a default logger is made explicit),
    so checkpoints without a `dirpath` land in `<folder>/checkpoints`, `--ckpt_path last` finds them and a
    resume writes its curves into the same folder. A logger with its own version, or `logger: false`, is
    left alone.

    Raises:
        UsageError: `--ckpt_path last` and no `last*.ckpt` in any checkpoint folder of the run; or a fresh
            run (no `--ckpt_path`) whose stable folder already holds checkpoints (it would overwrite them).

    Returns:
        The stable folder (None when the config's logger is its own).
    """
    from jsonargparse import Namespace

    trainer = cfg["trainer"]
    if cfg.get("run_dir"):
        trainer["default_root_dir"] = cfg["run_dir"]
    root = Path(trainer.get("default_root_dir") or os.getcwd())
    logger = trainer.get("logger")
    folder: Path | None = None
    if logger is None or logger is True:
        trainer["logger"] = Namespace(
            class_path="lightning.pytorch.loggers.TensorBoardLogger",
            init_args=Namespace(save_dir=str(root), name="lightning_logs", version=RUN_VERSION),
        )
        folder = root / "lightning_logs" / RUN_VERSION
    elif isinstance(logger, Namespace) and "TensorBoardLogger" in str(logger.get("class_path", "")):
        args = logger.get("init_args") or Namespace()
        if args.get("version") is None:
            args["version"] = RUN_VERSION
            logger["init_args"] = args
        save_dir = Path(args.get("save_dir") or root)
        folder = save_dir / str(args.get("name") or "lightning_logs") / str(args["version"])
    # where ModelCheckpoint callbacks will write: their dirpath, or the stable folder's checkpoints
    dirs: list[Path] = []
    for cb in trainer.get("callbacks") or []:
        if isinstance(cb, Namespace) and str(cb.get("class_path", "")).endswith("ModelCheckpoint"):
            dirpath = (cb.get("init_args") or Namespace()).get("dirpath")
            if dirpath is not None:
                dirs.append(Path(dirpath))
            elif folder is not None:
                dirs.append(folder / "checkpoints")
    ckpt = cfg.get("ckpt_path")
    if str(ckpt) == "last" and dirs and not any(d.is_dir() and any(d.glob("last*.ckpt")) for d in dirs):
        where = ", ".join(repr(str(d)) for d in dirs)
        raise UsageError(
            f"--ckpt_path last: no last.ckpt in {where}: nothing to resume (start without --ckpt_path, or "
            "give --run_dir / the checkpoint file of the run to resume)"
        )
    if ckpt is None and folder is not None:
        stable = folder / "checkpoints"
        if stable.is_dir() and any(stable.glob("*.ckpt")):
            raise UsageError(
                f"the run folder {str(folder)!r} already holds checkpoints of an earlier run: resume it with "
                "--ckpt_path last, or start a new run elsewhere with --run_dir <folder>"
            )
    return folder


def _refuse_trainer_level_optimization(cfg: Any) -> None:
    """One way to set the optimizer and clipping: the module's init args (LightningCLI's `--optimizer`,
    `--lr_scheduler` and `--trainer.gradient_clip_val` would be overridden or refused mid-run)."""
    for key, arg in (("optimizer", "optimizer"), ("lr_scheduler", "scheduler")):
        if cfg.get(key) is not None:
            raise UsageError(
                f"--{key}: set it with the module's `{arg}` init arg instead, e.g. "
                f"--model.init_args.{arg}=torch.optim.SGD --model.init_args.{arg}.init_args.lr=0.01 "
                f"(or `{arg}:` under model.init_args in the YAML); the module builds its own optimizer"
            )
    trainer = cfg.get("trainer")
    if trainer is not None and trainer.get("gradient_clip_val") is not None:
        raise UsageError(
            "--trainer.gradient_clip_val: rfvideo's modules step the optimizer themselves, so Lightning "
            "cannot clip; use --model.init_args.grad_clip=<max norm> (model.init_args.grad_clip in the YAML)"
        )


def _config_args(config_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    paths = [config_paths] if isinstance(config_paths, (str, os.PathLike)) else list(config_paths)
    args: list[str] = []
    for p in paths:
        args += ["--config", os.fspath(p)]
    return args


def build_module(
    config_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], overrides: Sequence[str] = ()
) -> pl.LightningModule:
    """The LightningModule a training config describes, built (weights loaded) but nothing run.

    Args:
        config_paths: One or more YAML configs, merged in order (as repeated `--config`).
        overrides: Extra command-line style arguments, e.g. `["--model.init_args.num_latent_frames=4"]`.

    Returns:
        The module (preflight-checked, in the state its loaders leave it).

    Raises:
        UsageError: A config file is missing, does not parse (e.g. a misspelt key), or fails preflight.
    """
    args = _config_args(config_paths)
    for path in args[1::2]:
        if not Path(path).is_file():
            raise UsageError(f"--config: no such file: {path!r}")
    try:
        cli = RFVideoCLI([*args, *overrides], run=False, model_only=True)
    except argparse.ArgumentError as e:
        raise UsageError(f"config {' + '.join(args[1::2])}: {config_error_line(str(e))}") from e
    return cli.model


def load_module_checkpoint(
    module: pl.LightningModule, ckpt_path: str | os.PathLike[str]
) -> pl.LightningModule:
    """Load a Lightning checkpoint's `state_dict` into `module` strictly (weights only, no code).

    Raises:
        UsageError: The file is missing, empty or truncated (checked before reading it); names the file.
        ValueError: The file holds no `state_dict`, or does not load (`load_checkpoint`).
    """
    preflight_checkpoint(ckpt_path, option="checkpoint")
    ckpt = load_checkpoint(ckpt_path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{os.fspath(ckpt_path)!r} is not a Lightning checkpoint (no 'state_dict')")
    module.load_state_dict(ckpt["state_dict"], strict=True)
    return module


def run_lightning(args: list[str]) -> int:
    """`rfvideo fit|validate|test|predict ...` (LightningCLI parses `args`)."""
    RFVideoCLI(args)
    return 0
