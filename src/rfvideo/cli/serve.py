"""Watch a trained checkpoint generate live in the browser and steer it with prompts (`rfvideo serve`).

`rfvideo serve --config X.yaml [--ckpt last.ckpt]` serves the config's module; `rfvideo serve --demo`
serves the model `make demo` trained (`outputs/demo/serve/config.yaml` + `model.ckpt`); without one it
serves the demo world's stage-2 recipe (experiments/demo/reward_forcing.yaml), training it first with
`rfvideo fit` when no checkpoint of it exists yet. Open the printed address, type a prompt, press Start;
Switch prompt changes it at the next chunk. Needs the extra: `pip install -e ".[serve]"`.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from rfvideo.cli.argtypes import nonnegative_int, positive_int
from rfvideo.cli.errors import UsageError

__all__ = ["DEMO_CONFIG", "DEMO_ROOT", "add_arguments", "find_checkpoint", "run"]

DEMO_CONFIG = Path("experiments/demo/reward_forcing.yaml")
DEMO_ROOT = Path("outputs/demo/serve")  # where `make demo` exports its model, and `--demo` trains one if none
DEMO_EXPORT = DEMO_ROOT / "config.yaml"  # written by `python -m rfvideo.demo` beside model.ckpt
# A model that cannot stream endlessly (no rolling window / absolute RoPE) streams this many chunks.
DEFAULT_FINITE_CHUNKS = 120
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _port(text: str) -> int:
    value = nonnegative_int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must lie in [1, 65535], got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rfvideo serve`."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="the experiment YAML the checkpoint was trained with")
    src.add_argument(
        "--demo",
        action="store_true",
        help=f"serve the model `make demo` trained ({DEMO_EXPORT}); without it the recipe {DEMO_CONFIG}, "
        f"trained first if {DEMO_ROOT} has no checkpoint",
    )
    parser.add_argument("--ckpt", default=None, help="Lightning checkpoint; default: the config's weights")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=_port, default=7860)
    parser.add_argument("--max-streams", type=positive_int, default=2, help="generations at once")
    parser.add_argument(
        "--max-chunks",
        type=positive_int,
        default=None,
        help=f"chunks per stream (default: endless when the model allows, else {DEFAULT_FINITE_CHUNKS})",
    )
    parser.add_argument("--max-prompt-chars", type=positive_int, default=200)
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="noise seed of every stream")
    parser.add_argument("--no-ema", action="store_true", help="stream from the raw weights, not the EMA")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="CPU threads (default: cores / max streams)"
    )
    parser.add_argument("--no-train", action="store_true", help="with --demo: never train, fail instead")


def find_checkpoint(root: Path) -> Path | None:
    """The newest `last.ckpt` under `root`, else the newest `*.ckpt`; None when there is none."""
    if not root.is_dir():
        return None
    ckpts = sorted(root.rglob("*.ckpt"), key=lambda p: (p.name == "last.ckpt", p.stat().st_mtime))
    return ckpts[-1] if ckpts else None


def _demo_config() -> Path:
    if DEMO_EXPORT.is_file() and (DEMO_EXPORT.parent / "model.ckpt").is_file():
        return DEMO_EXPORT  # the trained demo model of `make demo`
    # From the repository root (the documented place to run it), else next to the installed sources.
    here = Path.cwd() / DEMO_CONFIG
    if here.is_file():
        return here
    beside = Path(__file__).resolve().parents[3] / DEMO_CONFIG
    if beside.is_file():
        return beside
    raise UsageError(f"--demo: {DEMO_CONFIG} not found; run rfvideo serve --demo from the repository root")


def _demo_checkpoint(config: Path, *, train: bool) -> Path:
    if config == DEMO_EXPORT:
        return DEMO_EXPORT.parent / "model.ckpt"
    ckpt = find_checkpoint(DEMO_ROOT)
    if ckpt is not None:
        return ckpt
    command = f"rfvideo fit --config {DEMO_CONFIG} --trainer.default_root_dir={DEMO_ROOT}"
    if not train:
        raise UsageError(f"--demo: no checkpoint under {DEMO_ROOT}; make one with: {command}")
    print(f"no demo checkpoint under {DEMO_ROOT}: training one first ({command})", flush=True)
    from rfvideo.cli.lightning import run_lightning

    run_lightning(["fit", "--config", os.fspath(config), f"--trainer.default_root_dir={DEMO_ROOT}"])
    ckpt = find_checkpoint(DEMO_ROOT)
    if ckpt is None:
        raise UsageError(f"--demo: training finished but wrote no checkpoint under {DEMO_ROOT}")
    return ckpt


def run(args: argparse.Namespace) -> int:
    """Build the module, load the checkpoint, serve it until SIGINT / SIGTERM."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise UsageError(
            f'rfvideo serve needs the serve extra ({e.name} is missing): pip install -e ".[serve]"'
        ) from None
    from rfvideo.cli.preflight import preflight_checkpoint

    if args.ckpt:
        preflight_checkpoint(args.ckpt, option="--ckpt")
    config = _demo_config() if args.demo else Path(args.config)
    if not config.is_file():
        raise UsageError(f"--config: {os.fspath(config)!r} is not a file")
    ckpt = args.ckpt or (_demo_checkpoint(config, train=not args.no_train) if args.demo else None)

    import torch

    from rfvideo.cli.devices import resolve_device
    from rfvideo.cli.lightning import build_module, load_module_checkpoint
    from rfvideo.serve import ServeSettings, create_app, run_server
    from rfvideo.serve.loading import streaming_factory
    from rfvideo.streaming import check_stream_length

    device = resolve_device(args.device)
    if device == "cpu":
        # One stream per worker thread: more intra-op threads than cores only spin against each other.
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // args.max_streams))
    elif args.threads:
        torch.set_num_threads(args.threads)
    module = build_module([config])
    if ckpt:
        load_module_checkpoint(module, ckpt)
    module = module.to(device).eval()
    ema = getattr(module, "generator_ema", None)
    model = ema if not args.no_ema and ema is not None else module.generator
    max_chunks = args.max_chunks
    if max_chunks is None:
        try:
            check_stream_length(model.config, None)
        except ValueError:
            max_chunks = DEFAULT_FINITE_CHUNKS  # no rolling window / absolute RoPE: a finite stream
    try:
        factory = streaming_factory(module, use_ema=not args.no_ema, max_chunks=max_chunks)
        settings = ServeSettings(
            max_streams=args.max_streams,
            max_chunks=max_chunks,
            max_prompt_chars=args.max_prompt_chars,
            default_seed=args.seed,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.host not in _LOOPBACK:
        print(f"warning: binding {args.host}: anyone who can reach this machine can use the demo", flush=True)
    where = f"[{args.host}]" if ":" in args.host else args.host
    length = "endless streams" if max_chunks is None else f"{max_chunks} chunks per stream"
    print(
        f"rfvideo serve: http://{where}:{args.port}/  (checkpoint: {ckpt or 'config weights'}; {length}; "
        f"at most {args.max_streams} at once; Ctrl+C stops)",
        flush=True,
    )
    sig = run_server(create_app(factory, settings), host=args.host, port=args.port)
    print(f"rfvideo serve: stopped{f' ({signal.Signals(sig).name})' if sig else ''}", flush=True)
    return 0
