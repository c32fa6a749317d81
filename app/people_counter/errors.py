"""Errors that end the program with one line for the user instead of a traceback.

Each kind has its exit status (README, "Exit codes"): 2 for usage and config, 3 for the input,
4 for the model, 5 for the state directory's database; 1 is an unexpected failure.
"""

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_MODEL = 4
EXIT_STORE = 5
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem the user can fix: bad usage, a missing file, a bad config. Exit status 2."""

    exit_status = EXIT_USAGE


class ConfigError(UserError):
    """The config file is missing, unreadable or invalid, or names a file that is not there."""


class ModelError(UserError):
    """The model is missing or does not have a supported form."""

    exit_status = EXIT_MODEL


class InputError(UserError):
    """The video input can never be used: not a video, unreadable, or (a one-off run) missing."""

    exit_status = EXIT_INPUT


class EvaluationError(UserError):
    """Ground truth or a results file that cannot be scored: missing, malformed, or not of the same video."""
