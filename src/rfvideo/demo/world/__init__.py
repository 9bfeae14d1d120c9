"""rfvideo.demo.world: the offline demo's procedural world, its codecs, reward, text encoders and data."""

from rfvideo.demo.world.world import DIRECTIONS, WORLD_COLORS, ClipSpec, all_specs, render_clip, split_specs

__all__ = ["DIRECTIONS", "WORLD_COLORS", "ClipSpec", "all_specs", "render_clip", "split_specs"]
