"""Library exceptions; the CLI turns each kind into a one-line message and an exit code."""

from __future__ import annotations


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


def quote(value, limit: int = 40) -> str:
    """A user value for a message: repr of at most ``limit`` characters (an unbounded value never reaches a message)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        return repr(text[:limit]) + f"... ({len(text)} characters)"
    return repr(text)
