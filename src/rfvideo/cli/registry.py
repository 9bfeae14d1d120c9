"""Every `rfvideo` subcommand: one line each (name -> module path, one-line help).

Adding a subcommand is one entry here plus its module `rfvideo/cli/<name>.py`, which defines
`add_arguments(parser)` and `run(args) -> int` and imports torch / Lightning only inside `run`.
"""

from __future__ import annotations

__all__ = ["COMMANDS", "LIGHTNING_COMMANDS"]

COMMANDS: dict[str, tuple[str, str]] = {
    "generate": (
        "rfvideo.cli.generate",
        "prompts -> mp4 files, streamed (a pipeline folder, hub id or config)",
    ),
    "trajectories": (
        "rfvideo.cli.trajectories",
        "stage-1 data: ODE trajectories of the Wan base into shards",
    ),
    "precompute": ("rfvideo.cli.precompute", "videos -> VAE latent shards, or prompts -> umT5 embeddings"),
    "vbench": ("rfvideo.cli.vbench", "score a folder of {prompt}-{i}.mp4 videos on VBench dimensions"),
    "serve": ("rfvideo.cli.serve", "live browser demo: watch a model generate, switch prompts"),
    "estimate-memory": ("rfvideo.cli.estimate_memory", "per-GPU peak memory of a config's training step"),
    "sample": ("rfvideo.cli.sample", "sample VBench's prompt suite as {prompt}-{i}.mp4 + protocol.json"),
    "export": (
        "rfvideo.cli.export",
        "checkpoint -> pipeline folder (RFVideoPipeline.from_pretrained, --model)",
    ),
    "convert": ("rfvideo.cli.convert", "a peer's generator file -> diffusers folder + its inference preset"),
}
"""Argparse subcommands: name -> (module path, one-line help)."""

LIGHTNING_COMMANDS: dict[str, str] = {
    "fit": "train a LightningModule from a YAML config (LightningCLI)",
    "validate": "one evaluation epoch over the validation set",
    "test": "one evaluation epoch over the test set",
    "predict": "run the module's predict step over the data",
}
"""LightningCLI subcommands (parsed by jsonargparse): name -> one-line help."""
