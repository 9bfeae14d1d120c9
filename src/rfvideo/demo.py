"""`make demo` entry point (placeholder until the offline demo lands)."""

import sys


def main() -> int:
    print(
        "rfvideo demo: not implemented yet.\n"
        "The offline end-to-end demo (procedural video world, stage-1 ODE init then stage-2 reward\n"
        "optimisation, before/after table) is being built; this target only checks the install."
    )
    import rfvideo  # noqa: F401  (the install works)

    return 0


if __name__ == "__main__":
    sys.exit(main())
