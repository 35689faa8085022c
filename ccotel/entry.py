"""The ``ccotel`` command: ``ccotel statusline`` goes to its small client before anything else
is imported (Claude Code runs it on every refresh), a plain ``ccotel report`` straight to its
body (ccotel.report.run: answers without loading click); everything else to ccotel.cli."""

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


_REPORT_VALUES = {"--by": "by", "--since": "since", "--state-dir": "state_dir"}


def _report_args(argv: list[str]) -> dict[str, object] | None:
    """``[--config FILE] report [--by X] [--since S] [--json] [--state-dir D]`` as run()'s
    arguments, each option at most once and every value valid; else None (ccotel.cli then
    parses it, and says what is wrong as for any command)."""
    import os

    out: dict[str, object] = {"config": None, "by": "day", "since": None, "as_json": False,
                              "state_dir": None}  # fmt: skip
    seen: set[str] = set()
    args = list(argv)
    while args and args[0].startswith("--config"):
        name, eq, given = args.pop(0).partition("=")
        if name != "--config" or "config" in seen or not (eq or args):
            return None
        out["config"] = given if eq else args.pop(0)
        seen.add("config")
    if args[:1] != ["report"]:
        return None
    args.pop(0)
    while args:
        name, eq, given = args.pop(0).partition("=")
        key, value = "", given  # type: tuple[str, object]
        if name == "--json" and not eq:
            key, value = "as_json", True
        elif name in _REPORT_VALUES and (eq or args):
            key, value = _REPORT_VALUES[name], given if eq else args.pop(0)
        else:
            return None  # --help, a mistake, an option click spells otherwise
        if key in seen:
            return None
        seen.add(key)
        out[key] = value
    from ccotel.report import BY, parse_since

    config = out["config"] or os.environ.get("CCOTEL_CONFIG")
    path = str(config or "")
    if out["by"] not in BY or (  # click.Path(dir_okay=False) says what is wrong with it
        path and os.path.exists(path) and (os.path.isdir(path) or not os.access(path, os.R_OK))
    ):
        return None
    if out["since"] is not None:
        try:
            out["since"] = parse_since(str(out["since"]))
        except ValueError:
            return None
    out["config"] = config or None
    return out


def main() -> None:
    args = _statusline_args(sys.argv[1:])
    if args is not None:
        from ccotel.statusline import main as statusline

        sys.exit(statusline(args))
    report = _report_args(sys.argv[1:])
    if report is not None:
        from ccotel.report import run

        try:
            code = run(**report)  # type: ignore[arg-type]
        except BrokenPipeError:  # `ccotel report | head`: the reader left; so do we
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = 1
        except KeyboardInterrupt:  # Ctrl-C: as click's Abort (a new line, 130), no traceback
            sys.stderr.write("\n")
            code = 130
        sys.exit(code)
    from ccotel.cli import main as cli

    cli()
