"""The one command line: ``focalstack <command> ...``.

Each command lives in its own module ``focalstack.cli.<name>`` exposing
``register(subparsers)``, which adds its parser and sets ``func=run``.
Errors the user can fix (bad input files, bad options) are raised as ``UserError``
(or ValueError/FileNotFoundError subclasses from the library) and printed as one line.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__

# command name → module under focalstack.cli, in help order.
COMMANDS = {"info": "info", "synth": "synth", "train": "train", "predict": "predict", "eval": "eval",
            "import": "import_photos", "import-dataset": "import_dataset", "demo": "demo", "bench": "bench"}


class UserError(Exception):
    """An error caused by the user's input; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="focalstack", description="Depth and all-in-focus images from focal stacks.")
    p.add_argument("--version", action="version", version=f"focalstack {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        try:
            mod = importlib.import_module(f"focalstack.cli.{module}")
        except ModuleNotFoundError as e:  # a command whose module is not installed is left out
            if e.name != f"focalstack.cli.{module}":
                raise
            continue
        mod.register(sub)
    return p


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"focalstack: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.formatwarning = _one_line_warning  # a warning is one line naming the file, no source excerpt
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("focalstack: interrupted", file=sys.stderr)
        return 130
    except (UserError, ValueError, FileNotFoundError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        if "Original Traceback" in msg:  # re-raised from a DataLoader worker: keep the error line itself
            msg = msg.strip().splitlines()[-1].split(": ", 1)[-1]
        print(f"focalstack {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return int(rc or 0)
