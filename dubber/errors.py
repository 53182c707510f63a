"""One exception family for everything the user can cause or needs to act on.

The CLI turns any :class:`DubberError` into a single line ``dub: error: <message>`` and
exits with the error's ``exit_code``: 2 for bad usage or bad input (the user must change
something), 1 for a run that failed for another reason. Library code raises these; it
never prints and never calls ``sys.exit``.
"""

from __future__ import annotations


class DubberError(Exception):
    """Base class. ``str(error)`` is the one-line message shown to the user."""

    exit_code = 1


class UsageError(DubberError):
    """The command line or configuration is wrong (unknown preset, bad option value)."""

    exit_code = 2


class InputError(DubberError):
    """An input file is missing, unreadable, not media, truncated or otherwise unusable."""

    exit_code = 2


class OutputError(DubberError):
    """The output cannot be written where asked (folder missing or read-only, exists)."""

    exit_code = 2


class WeightsError(DubberError):
    """A weight file is missing, has the wrong checksum or an unsafe format."""

    exit_code = 2


class RunError(DubberError):
    """The run failed for a reason that is not the user's input (encoder crashed, ...)."""

    exit_code = 1


class Interrupted(DubberError):
    """The user pressed Ctrl-C (or the process got SIGTERM); nothing was written."""

    exit_code = 130
