"""Errors a user can fix: a stage reports them as one line, without a traceback."""


class StageError(Exception):
    """A failure the user can fix (bad params, data or tracking store)."""


class ConfigError(StageError, ValueError):
    """A params.yaml value is invalid; the message names the key."""


class DataError(StageError, ValueError):
    """An input file is missing, corrupt or malformed; the message names it."""
