"""One exception family for everything a user can get wrong.

The CLI prints a `LeverError` as a single line (`error: ...`) and exits with status 2, so every
message must say what is wrong *and* how to fix it. Bugs are not `LeverError`s and keep their
tracebacks.
"""


class LeverError(Exception):
    """A mistake in user input (task, recipe, flag, file) that the user can fix."""


class ConfigError(LeverError):
    """A recipe or override that cannot be used."""


class TaskError(LeverError):
    """A task name that does not exist or cannot be rendered on this machine."""


class ReplayError(LeverError):
    """A replay size or memory budget that cannot work."""
