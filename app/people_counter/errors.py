"""Errors that end the program with one line for the user instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix: bad input, missing file, bad config. Exit status 2."""

    exit_status = 2


class ConfigError(UserError):
    """The config file is missing, unreadable or invalid."""


class ModelError(UserError):
    """The model is missing or does not have a supported form."""


class InputError(UserError):
    """The video input is missing, unreadable or not a video."""


class EvaluationError(UserError):
    """Ground truth or a results file that cannot be scored: missing, malformed, or not of the same video."""
