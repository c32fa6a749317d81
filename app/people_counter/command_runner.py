"""What every command of the package does around its work: logging, and one line instead of a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from people_counter.errors import UserError
from people_counter.priority import share_nice_with_autogroup


def run_command(prog: str, verbose: bool, body: Callable[[], int]) -> int:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    share_nice_with_autogroup()
    try:
        return int(body())
    except UserError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        return 130
