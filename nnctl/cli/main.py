"""The ``nnctl`` Typer app: registers the verbs and turns library errors into messages and exit codes.

Exit codes: 0 success; 2 invalid input (usage, spec, data, checkpoint, device); 3 training diverged;
130 interrupted. A user's mistake is one ``error: ...`` line on stderr, never a traceback.
"""

from __future__ import annotations

import functools
import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, evaluate and serve neural networks from declarative spec files.")


def reports_errors(fn):
    """Run a verb; NnctlError -> 'error: ...' on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from nnctl.errors import NnctlError  # noqa: PLC0415

        try:
            return fn(*args, **kwargs)
        except NnctlError as exc:
            sys.stdout.flush()
            sys.stderr.write(f"error: {exc}\n")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            sys.stderr.write("error: interrupted\n")
            raise typer.Exit(130) from None
        except BrokenPipeError:  # the reader of stdout went away (| head): not an error of ours
            raise typer.Exit(0) from None

    return wrapper


def _register():
    from nnctl.cli import (augment_preview, compare, evaluate, init_cmd, inspect_cmds, plot, predict,  # noqa: PLC0415
                           schema_cmd, train)

    for module in (train, evaluate, predict, inspect_cmds, plot, compare, init_cmd, schema_cmd, augment_preview):
        module.register(app, reports_errors)


_register()


def run() -> None:
    app()
