"""The ``ccotel`` command: ``ccotel statusline`` goes to its small client before anything else
is imported (Claude Code runs it on every refresh); everything else to ccotel.cli."""

from __future__ import annotations

import sys


def _statusline_args(argv: list[str]) -> list[str] | None:
    """The arguments after ``statusline`` when the fast client serves this command line
    (``[--config FILE] statusline [flags]``, not install/uninstall/--help); else None."""
    i = 0
    pre: list[str] = []
    while i < len(argv) and argv[i].startswith("--config"):
        step = 1 if "=" in argv[i] else 2
        pre += argv[i : i + step]
        i += step
    if argv[i : i + 1] != ["statusline"]:
        return None
    rest = argv[i + 1 :]
    if any(a in ("-h", "--help", "install", "uninstall") for a in rest):
        return None
    return pre + rest


def main() -> None:
    args = _statusline_args(sys.argv[1:])
    if args is not None:
        from ccotel.statusline import main as statusline

        sys.exit(statusline(args))
    from ccotel.cli import main as cli

    cli()
