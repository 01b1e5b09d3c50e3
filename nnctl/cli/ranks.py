"""One rank's failure under MPI: report it on that rank and end the whole job with the CLI's exit code.

Without the abort the other ranks would wait forever in their next allreduce. An interruption is
the exception: once every rank has stopped (the stop vote), they meet so rank 0 can write first,
and rank 0's exit code is the job's.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections.abc import Iterator

from nnctl.distributed import World
from nnctl.errors import Interrupted, NnctlError


def exit_code(exc: BaseException) -> int:
    """The CLI's exit code for an exception: NnctlError's own, 130 for Ctrl-C, 0 for a closed stdout, 1 for a bug."""
    if isinstance(exc, BrokenPipeError):  # the reader of stdout went away (| head): not an error of ours
        return 0
    if isinstance(exc, NnctlError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    code = getattr(exc, "exit_code", getattr(exc, "code", None))  # typer.Exit / SystemExit
    return code if isinstance(code, int) else 1


@contextlib.contextmanager
def guard(world: World) -> Iterator[World]:
    """On an exception: print it on this rank and MPI_Abort every rank with its exit code."""
    try:
        yield world
    except BaseException as exc:
        if world.size == 1:
            raise
        if isinstance(exc, Interrupted) and world.rendezvous():
            if world.rank == 0:
                raise  # the CLI says which checkpoint it wrote and exits with the interruption's code
            sys.exit(0)  # rank 0's exit code is the job's
        report(world, exc)
        time.sleep(0.5)  # let mpiexec forward the error line: MPI_Abort kills the ranks before it drains stderr
        world.abort(exit_code(exc))
    else:
        if world.size > 1:
            world.rendezvous()  # a rank interrupted in the last batch may be waiting for this one


def report(world: World, exc: BaseException) -> None:
    """``exc`` as this rank's one ``error:`` line (a bug keeps its traceback)."""
    if not isinstance(exc, (NnctlError, KeyboardInterrupt, SystemExit, BrokenPipeError)):
        traceback.print_exception(exc)
    if isinstance(exc, BrokenPipeError):
        return
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    # only rank 0 writes, so another rank's "wrote CKPT" would not be true
    message = "interrupted" if isinstance(exc, Interrupted) and world.rank else (str(exc) or type(exc).__name__)
    sys.stderr.write(f"error: rank {world.rank} of {world.size}: {message}\n")
    sys.stderr.flush()
