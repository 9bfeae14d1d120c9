"""rfvideo.distributed: FSDP2 / activation-checkpointing wrapping policy."""

from rfvideo.distributed.fsdp import shard_generator

__all__ = ["shard_generator"]
