"""Library exceptions; the CLI turns each kind into a one-line message and an exit code."""

from __future__ import annotations

import json


class NnctlError(Exception):
    """Base of every error nnctl reports to a user (never a bug)."""

    exit_code = 2


class SpecError(NnctlError):
    """The spec file or an override is invalid: the message names the file and the field."""

    @classmethod
    def many(cls, source: str, problems: list[str], cap: int = 20) -> SpecError:
        """One error for several problems: ``lines`` holds one ``<source>: <problem>`` per problem.

        ``str()`` joins them with ``"\nerror: "`` so that a reporter printing ``error: {exc}`` shows one
        ``error:`` line per problem."""
        lines = [f"{source}: {p}" for p in problems[:cap]]
        if len(problems) > cap:
            lines.append(f"{source}: ... and {len(problems) - cap} more problems")
        err = cls("\nerror: ".join(lines))
        err.lines = lines
        return err


class DataError(NnctlError):
    """A data file cannot be used: the message names the file and the row, column or key."""


class CheckpointError(NnctlError):
    """A checkpoint is missing, truncated, not nnctl's, or holds arrays of the wrong shape."""


class BackendError(NnctlError):
    """The requested device cannot be used (no CuPy, no driver, no GPU)."""


class TrainingDiverged(NnctlError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3
    checkpoint: str | None = None  # what was written, for the CLI's command that continues


class Interrupted(NnctlError):
    """Training was interrupted by SIGINT after writing the last finished epoch."""

    exit_code = 130
    checkpoint: str | None = None  # what was written, for the CLI's command that continues


class Preempted(Interrupted):
    """SIGTERM (or SIGUSR1 with checkpoint_on_signal) wrote a checkpoint at a batch boundary: requeue and resume.

    143 = 128 + SIGTERM, the code a process killed by SIGTERM reports, which SLURM and Kubernetes
    already treat as "terminated" (docs/distributed.md)."""

    exit_code = 143


class OutputError(NnctlError):
    """An output path cannot be written: not a folder, not writable, locked by another run, or the disk is full."""


def quote(value, limit: int = 40, *, as_written: bool = False) -> str:
    """A user's value for a message, bounded by ``limit`` characters (an unbounded value never reaches one).

    Read from a file (the default): the text as Python quotes a string, ``'abc'``, cut to ``limit``
    characters and marked ``... (N characters)``. A spec value (``as_written``): as the user wrote it, in
    JSON (``"abc"``, ``1.5``, ``true``), cut to ``limit`` characters ending ``...``; a long table or list
    is named instead (``a table``, ``a list of 12``)."""
    if not as_written:
        text = value if isinstance(value, str) else str(value)
        return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) <= limit:
        return text
    if isinstance(value, (dict, list)):
        return "a table" if isinstance(value, dict) else f"a list of {len(value)}"
    return text[: limit - 3] + "..."
