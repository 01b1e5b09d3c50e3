"""The ``nnctl`` Typer app: registers the verbs and is the one place that turns exceptions into exit codes.

Exit codes: 0 success; 1 internal error (a bug: please report); 2 invalid input (usage, spec, data,
checkpoint, device, an unwritable output, a full disk); 3 training diverged; 130 interrupted; 143
terminated by SIGTERM after writing a checkpoint (requeue and ``--resume auto``). Every
failure is one ``error: ...`` line on stderr, never a traceback (``NNCTL_DEBUG=1`` adds it for bugs).
"""

from __future__ import annotations

import importlib
import sys

try:  # Ctrl-C while the (slow) imports run: no traceback
    import functools
    import os

    import typer
    from typer.core import TyperGroup

    try:  # Typer >= 0.20 vendors Click
        from typer._click import exceptions as click_exc
    except ImportError:  # pragma: no cover - older Typer on real Click
        from click import exceptions as click_exc
except KeyboardInterrupt:
    sys.stderr.write("error: interrupted\n")
    raise SystemExit(130) from None


def _fail(message: str, code: int, lines: list[str] | None = None):
    """Write one ``error:`` line (newlines folded), or one per problem of a SpecError.many, and exit."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):  # stdout already gone: the error line still goes to stderr
        pass
    for line in lines or [message]:
        sys.stderr.write("error: " + " ".join(str(line).split()) + "\n")
    sys.stderr.flush()
    raise SystemExit(code)


def describe(exc: BaseException) -> tuple[str, int]:
    """The one-line message and exit code for an exception that reached a verb."""
    import csv
    import zipfile
    import zlib

    from nnctl.errors import NnctlError, quote

    if isinstance(exc, NnctlError):
        return str(exc), exc.exit_code
    if isinstance(exc, OSError):
        import errno

        where = f"{exc.filename}: " if exc.filename else ""
        if exc.errno == errno.ENOSPC or "No space left" in str(exc):
            return f"{where}no space left on device; nothing was replaced", 2
        reason = exc.strerror or str(exc) or type(exc).__name__
        return f"{where}{reason}", 2
    if isinstance(exc, UnicodeDecodeError):
        return (
            f"input is not {exc.encoding.upper()} text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ), 2
    if isinstance(exc, csv.Error):
        return f"not a readable CSV file ({quote(exc, 80)})", 2
    if isinstance(exc, zlib.error):
        return f"truncated or corrupt compressed data ({quote(exc, 80)})", 2
    if isinstance(exc, EOFError):
        return f"unexpected end of data: a truncated or empty file ({quote(exc, 80)})", 2
    if isinstance(exc, zipfile.BadZipFile):
        return f"not a readable zip/.npz archive ({quote(exc, 80)})", 2
    if isinstance(exc, MemoryError):
        return "out of memory: the input or the model is too large for this machine", 2
    return (
        f"internal error ({type(exc).__name__}: {quote(exc, 80)}), please report; rerun with NNCTL_DEBUG=1 "
        f"for the traceback"
    ), 1


def reports_errors(fn):
    """Run a verb; any exception -> one 'error: ...' line on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click_exc.ClickException, SystemExit):
            raise
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:  # the reader of stdout went away (| head): not an error of ours
            try:
                sys.stdout = open(os.devnull, "w")
            except OSError:
                pass
            raise SystemExit(0) from None
        except Exception as exc:  # noqa: BLE001 - the one boundary: every other error becomes a line
            from nnctl.errors import NnctlError

            message, code = describe(exc)
            if os.environ.get("NNCTL_DEBUG") and not isinstance(exc, NnctlError):
                import traceback

                traceback.print_exc()
            _fail(message, code, getattr(exc, "lines", None))

    return wrapper


class Group(TyperGroup):
    """The verb group: Click's own usage errors also become one ``error:`` line with exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_exc.NoArgsIsHelpError as exc:  # bare `nnctl`: the help, as asked for
            sys.stdout.write(exc.ctx.get_help() + "\n")
            raise SystemExit(0) from None
        except click_exc.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "nnctl"
            _fail(f"{command}: {exc.format_message()} (see {command} --help)", 2)
        except click_exc.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            _fail("interrupted", 130)
        raise SystemExit(rv if isinstance(rv, int) else 0)


def _version(value: bool):
    if value:
        from nnctl import __version__

        sys.stdout.write(f"nnctl {__version__}\n")
        raise typer.Exit(0)


app = typer.Typer(
    cls=Group,
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Train, evaluate and serve neural networks from declarative spec files.",
)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
):
    """Train, evaluate and serve neural networks from declarative spec files."""


#: the modules of nnctl.cli that each register one or more verbs, in the order ``--help`` lists them
VERBS = (
    "train",
    "evaluate",
    "predict",
    "inspect_cmds",
    "plot",
    "compare",
    "init_cmd",
    "schema_cmd",
    "augment_preview",
    "time_cmd",
    "lr_find",
    "export_cmd",
    "import_cmd",
    "serve_cmd",
    "generate_cmd",
    "data_cmd",
    "tune_cmd",
)


def _register():
    for name in VERBS:  # each verb's imports load only when the CLI starts
        importlib.import_module(f"nnctl.cli.{name}").register(app, reports_errors)


try:
    _register()
except KeyboardInterrupt:
    sys.stderr.write("error: interrupted\n")
    raise SystemExit(130) from None


def run() -> None:
    try:
        app()
    except KeyboardInterrupt:  # between the verb's boundary and the exit
        sys.stderr.write("error: interrupted\n")
        raise SystemExit(130) from None
