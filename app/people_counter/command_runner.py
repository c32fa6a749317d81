"""What every command of the package does around its work: logging, and one line instead of a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable

from people_counter.errors import EXIT_INTERRUPTED, EXIT_RUNTIME, UserError
from people_counter.logging_setup import configure_logging, error_line
from people_counter.priority import share_nice_with_autogroup

log = logging.getLogger("people_counter.command_runner")


def run_command(prog: str, verbose: bool, body: Callable[[], int]) -> int:
    configure_logging(verbose)
    share_nice_with_autogroup()
    try:
        return int(body())
    except UserError as error:
        error_line(f"{prog}: {error}")
        return error.exit_status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as error:  # the last resort: one line, the traceback at debug level
        error_line(f"{prog}: unexpected error: {type(error).__name__}: {error} (--verbose shows the traceback)")
        log.debug("the traceback of the unexpected error", exc_info=True)
        return EXIT_RUNTIME
