"""Errors a user can fix.

A bad config or input, a missing file, an unreachable cluster, workers that keep dying. The app
reports these in one line with exit code 2; anything else is a bug and keeps its traceback (exit
code 1). Each also derives from the builtin it refines, so callers that catch ValueError /
FileNotFoundError / ConnectionError / RuntimeError still do.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the user can fix; the message names the fix."""


class InputError(PipelineError, ValueError):
    """A bad config value, argument or input (data, checkpoint, store of another configuration)."""


class MissingFileError(PipelineError, FileNotFoundError):
    """A data file, directory or checkpoint that is not where the config says."""


class ClusterUnreachableError(PipelineError, ConnectionError):
    """The Ray cluster does not answer at its address."""


class OperationError(PipelineError, RuntimeError):
    """A run that cannot go on for a reason outside the code.

    Workers that keep dying, a store that cannot be written, a nondeterministic model, no working
    product mode.
    """


def one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Refuse ``value`` of setting ``name`` unless it is one of ``allowed``.

    Refuse ``value`` of setting ``name`` unless it is one of ``allowed`` (InputError naming them).
    """
    if value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
