"""Watch a trained model generate live in the browser and steer it with prompts (`rfvideo serve`).

`rfvideo serve --model DIR` serves an exported pipeline folder (or a hub id); `--config X.yaml [--ckpt F]`
a training config's generator (no reward models or data are built); `--demo` the model `make demo`
exported (`outputs/demo/pipeline`), or, when there is none, the demo world's stage-2 recipe
(experiments/demo/reward_forcing.yaml), trained first with `rfvideo fit`. Open the printed address, type a
prompt, press Start; Switch prompt changes it at the next chunk. Needs the extra:
`pip install -e ".[serve]"`.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from rfvideo.cli.argtypes import nonnegative_int, positive_int
from rfvideo.cli.errors import UsageError
from rfvideo.cli.model_source import DEMO_PIPELINE, add_model_arguments, check_model_arguments, load_pipeline

__all__ = ["DEMO_CONFIG", "DEMO_ROOT", "add_arguments", "find_checkpoint", "run"]

DEMO_CONFIG = Path("experiments/demo/reward_forcing.yaml")
DEMO_ROOT = Path("outputs/demo/serve")  # where `--demo` trains the recipe when make demo exported nothing
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
    add_model_arguments(parser, demo=True)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=_port, default=7860, help="TCP port")
    parser.add_argument("--max-streams", type=positive_int, default=2, help="generations at once")
    parser.add_argument(
        "--max-chunks",
        type=positive_int,
        default=None,
        help=f"chunks per stream (default: endless when the model allows, else {DEFAULT_FINITE_CHUNKS})",
    )
    parser.add_argument("--max-prompt-chars", type=positive_int, default=200, help="prompt length cap")
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also accept this Host header (default: localhost, 127.0.0.1, ::1 and the bound address; "
        "'*.example.org' allows subdomains); guards against DNS rebinding",
    )
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="noise seed of every stream")
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


def _demo_recipe_config() -> Path:
    # From the repository root (the documented place to run it), else next to the installed sources.
    here = Path.cwd() / DEMO_CONFIG
    if here.is_file():
        return here
    beside = Path(__file__).resolve().parents[3] / DEMO_CONFIG
    if beside.is_file():
        return beside
    raise UsageError(f"--demo: {DEMO_CONFIG} not found; run rfvideo serve --demo from the repository root")


def _resolve_demo(args: argparse.Namespace) -> None:
    """`--demo`: the exported demo pipeline when `make demo` left one, else the recipe's checkpoint
    (trained first unless `--no-train`); rewrites `args` into `--model` or `--config --ckpt`."""
    if (DEMO_PIPELINE / "model_index.json").is_file():
        args.demo, args.model = False, str(DEMO_PIPELINE)
        return
    config = _demo_recipe_config()
    ckpt = find_checkpoint(DEMO_ROOT)
    if ckpt is None:
        command = f"rfvideo fit --config {DEMO_CONFIG} --trainer.default_root_dir={DEMO_ROOT}"
        if args.no_train:
            raise UsageError(
                f"--demo: no {DEMO_PIPELINE} and no checkpoint under {DEMO_ROOT}; run: {command}"
            )
        print(f"no demo model: training the recipe first ({command})", flush=True)
        from rfvideo.cli.lightning import run_lightning

        run_lightning(["fit", "--config", os.fspath(config), f"--trainer.default_root_dir={DEMO_ROOT}"])
        ckpt = find_checkpoint(DEMO_ROOT)
        if ckpt is None:
            raise UsageError(f"--demo: training finished but wrote no checkpoint under {DEMO_ROOT}")
    args.demo, args.config, args.ckpt = False, [os.fspath(config)], os.fspath(ckpt)


def run(args: argparse.Namespace) -> int:
    """Load the pipeline, serve it until SIGINT / SIGTERM."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise UsageError(
            f'rfvideo serve needs the serve extra ({e.name} is missing): pip install -e ".[serve]"'
        ) from None
    if args.demo:
        _resolve_demo(args)
    problems = check_model_arguments(args)
    if problems:
        raise UsageError("\n".join(problems))

    import torch

    from rfvideo.serve import ServeSettings, create_app, run_server
    from rfvideo.serve.loading import streaming_factory
    from rfvideo.serve.settings import DEFAULT_ALLOWED_HOSTS
    from rfvideo.streaming import check_stream_length

    if args.device in ("auto", "cpu"):
        # One stream per worker thread: more intra-op threads than cores only spin against each other.
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // args.max_streams))
    elif args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_pipeline(args)
    max_chunks = args.max_chunks
    if max_chunks is None:
        try:
            check_stream_length(pipe.transformer.config, None)
        except ValueError:
            max_chunks = DEFAULT_FINITE_CHUNKS  # no rolling window / absolute RoPE: a finite stream
    try:
        factory = streaming_factory(pipe, max_chunks=max_chunks)
        settings = ServeSettings(
            allowed_hosts=(*DEFAULT_ALLOWED_HOSTS, *args.allowed_host),
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
    source = args.model or f"{' + '.join(args.config)} ({args.ckpt or 'config weights'})"
    print(
        f"rfvideo serve: http://{where}:{args.port}/  (model: {source}; {length}; "
        f"at most {args.max_streams} at once; Ctrl+C stops)",
        flush=True,
    )
    sig = run_server(create_app(factory, settings), host=args.host, port=args.port)
    print(f"rfvideo serve: stopped{f' ({signal.Signals(sig).name})' if sig else ''}", flush=True)
    return 0
