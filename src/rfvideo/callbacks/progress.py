"""A progress bar that reads right under `max_steps`: Lightning's rich bar prints "Epoch 0/-2" because
`max_steps` training sets `max_epochs = -1` and the bar shows `max_epochs - 1` as the last epoch.

`VideoGeneratorModule.configure_callbacks` swaps Lightning's default rich bar for this one (same settings);
a progress bar the user configured is left alone.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

__all__ = ["StepRichProgressBar", "step_progress_bar"]


class StepRichProgressBar(RichProgressBar):
    """`RichProgressBar` that shows "Epoch N" (no "/last epoch") when the number of epochs is open-ended."""

    def _get_train_description(self, current_epoch: int) -> str:
        max_epochs = self.trainer.max_epochs
        if max_epochs is not None and max_epochs >= 0:
            return super()._get_train_description(current_epoch)
        description = f"Epoch {current_epoch}"
        if len(self.validation_description) > len(description):
            description = f"{description:{len(self.validation_description)}}"  # same width as validation's
        return description


def step_progress_bar(bar: ProgressBar | None) -> StepRichProgressBar | None:
    """The replacement for Lightning's own default rich bar, or None to keep `bar` as it is."""
    if type(bar) is not RichProgressBar:
        return None
    return StepRichProgressBar(
        refresh_rate=bar.refresh_rate, leave=bar._leave, theme=bar.theme, console_kwargs=bar._console_kwargs
    )
