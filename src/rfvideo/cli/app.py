"""`rfvideo` dispatch: top-level help, the registered argparse subcommands, and LightningCLI.

Nothing here imports torch or Lightning: `rfvideo --help`, `rfvideo <cmd> --help` and argument errors
are answered from the standard library alone; a subcommand's heavy imports happen in its `run`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from rfvideo.cli.errors import UsageError
from rfvideo.cli.registry import COMMANDS, LIGHTNING_COMMANDS

__all__ = ["main"]

TRACEBACK_FLAG = "--traceback"
TRACEBACK_ENV = "RFVIDEO_TRACEBACK"


def _help_text() -> str:
    width = max(len(name) for name in (*COMMANDS, *LIGHTNING_COMMANDS)) + 2
    lines = [
        "usage: rfvideo <command> [options]    (rfvideo <command> --help for its options)",
        "",
        "Reward-Forcing text-to-video on Wan2.1: train with LightningCLI, generate, evaluate.",
        "",
        "training (LightningCLI; YAML configs choose classes by class_path):",
        *(f"  {name:<{width}}{text}" for name, text in LIGHTNING_COMMANDS.items()),
        "",
        "commands:",
        *(f"  {name:<{width}}{text}" for name, (_, text) in COMMANDS.items()),
        "",
        "options:",
        f"  {'-h, --help':<{width + 10}}show this message and exit",
        f"  {TRACEBACK_FLAG:<{width + 10}}show the full traceback of an error (or {TRACEBACK_ENV}=1)",
    ]
    return "\n".join(lines) + "\n"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help; the module docstring kept as written."""


def _traceback_wanted(argv: list[str]) -> bool:
    return TRACEBACK_FLAG in argv or os.environ.get(TRACEBACK_ENV, "").strip() not in ("", "0")


def _run_command(name: str, argv: list[str]) -> int:
    module_path, text = COMMANDS[name]
    module = importlib.import_module(module_path)
    # Every option's default in --help (an option with help text shows "(default: ...)").
    parser = argparse.ArgumentParser(
        prog=f"rfvideo {name}",
        description=module.__doc__ or text,
        formatter_class=_HelpFormatter,
    )
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    code = module.run(args)
    return 0 if code is None else int(code)


def main(argv: Sequence[str] | None = None) -> int:
    """The `rfvideo` console script.

    Args:
        argv: Arguments without the program name; `None` reads `sys.argv[1:]`.

    Returns:
        The exit status: 0 on success, 2 for a user error (printed as one `error: ...` line), 1 for a
        value the library rejected at run time. Argparse / jsonargparse errors exit 2 via `SystemExit`.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    show_traceback = _traceback_wanted(args)
    args = [a for a in args if a != TRACEBACK_FLAG]
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(_help_text())
        return 0
    if args[0] in ("-V", "--version"):
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"rfvideo {version('rfvideo')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            print("rfvideo (not installed)")
        return 0
    name = args[0]
    if not name.startswith("-") and name not in COMMANDS and name not in LIGHTNING_COMMANDS:
        choices = ", ".join([*LIGHTNING_COMMANDS, *COMMANDS])
        print(f"error: unknown command {name!r} (choose from {choices}; see rfvideo --help)", file=sys.stderr)
        return 2
    try:
        if name in COMMANDS:
            return _run_command(name, args[1:])
        from rfvideo.cli.lightning import run_lightning

        return run_lightning(args)
    except UsageError as e:
        if show_traceback:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as e:
        # Library code rejects bad input with a ValueError naming the value: for a user that line is
        # the whole story; developers get the traceback with --traceback.
        if show_traceback:
            raise
        print(f"error: {e}  (rerun with {TRACEBACK_FLAG} for the traceback)", file=sys.stderr)
        return 1
