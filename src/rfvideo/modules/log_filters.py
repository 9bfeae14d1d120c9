"""Silence Lightning messages that are noise for these recipes, and only those (matched by their text).

- The "💡 Tip: ... litlogger / litmodels" advertisements printed on every run.
- "Found N module(s) in eval mode": the VAE, text encoder, reward models and EMA copy are frozen on
  purpose, and `VideoGeneratorModule.on_train_start` puts the trainable generator in train mode (a
  loader such as diffusers' `from_pretrained` returns it in eval mode, which was the real signal).
- "The following callbacks returned in `LightningModule.configure_callbacks` will override ...:
  RichProgressBar": that is our own swap of the default bar (`rfvideo.callbacks.progress`).
- "Couldn't infer the batch indices fetched from your dataloader: `ResumableLoader`" in predict:
  `VideoPredictionWriter` names files from the batch itself and never reads batch indices.
- torch's `LeafSpec` deprecation raised from inside Lightning's own pytree helper (not our code).
- ModelCheckpoint's "manual optimization and every_n_train_steps" warning: the recipes step the optimizer
  inside `training_step`, so a checkpoint written at batch end holds the weights after that step, which is
  exactly what an exact resume needs (tests/test_modules_resume_ddp.py resumes bit for bit).
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["install_log_filters"]

_TIP_PREFIX = "💡 Tip:"
_OUR_BAR_SWAP = "will override existing callbacks passed to Trainer: RichProgressBar"
_WARNINGS = (
    r"Found \d+ module\(s\) in eval mode at the start of training",
    r"Using ModelCheckpoint with manual optimization and every_n_train_steps",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Couldn't infer the batch indices fetched from your dataloader: `ResumableLoader`",
)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.getMessage())
        return not (message.startswith(_TIP_PREFIX) or message.endswith(_OUR_BAR_SWAP))


def install_log_filters() -> None:
    """Install the filters (idempotent; checks what is installed, since `warnings.catch_warnings` blocks
    such as pytest's restore the filter list when they exit)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
    present = {f[1].pattern for f in warnings.filters if f[0] == "ignore" and f[1] is not None}
    for pattern in _WARNINGS:
        if pattern not in present:
            warnings.filterwarnings("ignore", message=pattern)
