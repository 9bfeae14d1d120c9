"""rfvideo.demo_world: the offline demo's procedural world, tiny components and data modules."""

from rfvideo.demo_world.world import DIRECTIONS, WORLD_COLORS, ClipSpec, all_specs, render_clip, split_specs

__all__ = ["DIRECTIONS", "WORLD_COLORS", "ClipSpec", "all_specs", "render_clip", "split_specs"]
