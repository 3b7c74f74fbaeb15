"""The `vqtool` command: a thin layer over the library. Data goes to stdout, messages to stderr.

`build_app()` mounts the generic commands (cli/codes.py, cli/models.py) and every registered
family's own (`register(app, train_app)` in its cli.py). Nothing here imports torch: `--help` and
`--version` stay fast, and a command imports what it needs when it runs.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from .. import __version__, registry
from ..errors import StdoutClosed, VqtoolError
from .common import console, print_error

HELP = ("Discrete codes and controllable generation from media.\n\n"
        "Examples:\n\n"
        "    vqtool encode photo.png                  # writes photo.vqc\n\n"
        "    vqtool decode photo.vqc -o back.png\n\n"
        "    vqtool encode photo.png -o - | vqtool decode - -o back.png\n\n"
        "    vqtool convert-voice talk.wav --to spk3 -o other.wav\n\n"
        "    vqtool fade face.jpg --smile 0.7 -o smiling.png\n\n"
        "    vqtool models list")


def _version(value: bool):
    if value:
        typer.echo(f"vqtool {__version__}")
        raise typer.Exit()


def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit."),
          threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads for the models (default: "
                                                "$VQTOOL_THREADS, else $OMP_NUM_THREADS, else the cores this "
                                                "process may use: affinity and cgroup quota).")):
    """Discrete codes and controllable generation from media."""
    from ..threads import configure

    try:
        configure(threads)
    except VqtoolError as exc:
        raise typer.BadParameter(str(exc), param_hint="--threads") from None


def build_app() -> typer.Typer:
    """The whole command line, from the registry as it stands now."""
    from . import codes, models

    app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                      rich_markup_mode="markdown", help=HELP)
    app.callback()(_root)
    train_app = typer.Typer(no_args_is_help=True, help="Train a checkpoint (runs unchanged under torchrun).")
    for command in (codes.encode, codes.decode, codes.inspect, codes.compare):
        app.command()(command)
    for family in registry.families():
        family.module("cli").register(app, train_app)
    app.add_typer(train_app, name="train")
    models.register(app)
    return app


def _terminate(signum, frame):
    """SIGTERM unwinds (exit 143), so that temporary outputs are removed on the way out."""
    raise SystemExit(128 + signum)


def main() -> None:
    """Entry point: user errors are one line on stderr with exit 1; usage errors exit 2; a closed
    stdout (`vqtool ... | head`) ends quietly with exit 0."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        build_app()()
    except VqtoolError as exc:
        print_error(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except (StdoutClosed, BrokenPipeError):
        _quiet_stdout()
        sys.exit(0)
    except Exception as exc:  # a bug: still one line, the traceback only on request
        if os.environ.get("VQTOOL_DEBUG"):
            raise
        console.print(f"vqtool: internal error: {exc.__class__.__name__}: {exc} (set VQTOOL_DEBUG=1 for a traceback)",
                      markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)


def _quiet_stdout() -> None:
    """After the reader of our stdout went away, stop Python complaining while it flushes at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
