"""The `rfvideo` console script (`rfvideo = "rfvideo.cli:main"`): LightningCLI `fit|validate|test|
predict --config X.yaml` plus the subcommands listed in `rfvideo.cli.registry`."""

from rfvideo.cli.app import main
from rfvideo.cli.errors import UsageError

__all__ = ["UsageError", "main"]
