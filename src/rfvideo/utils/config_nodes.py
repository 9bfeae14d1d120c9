"""Reading a parsed YAML config before anything is built: the `init_args` of a `class_path` node.

The preflight checks and the memory estimate read configs this way, without importing the classes they name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["init_args"]


def init_args(node: Any) -> dict[str, Any]:
    """A `{class_path, init_args}` node's `init_args` ({} when the node or its arguments are absent)."""
    return dict((node or {}).get("init_args", {}) or {}) if isinstance(node, Mapping) else {}
