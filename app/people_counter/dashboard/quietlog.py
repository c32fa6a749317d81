"""aiohttp's server log in one line a record: a bad request (a malformed line, a header too
long) logs a whole traceback there, and a hostile client can send many.

The record keeps its exception's type and text, without the traceback (kept with debug
logging on, when one wants it). Repeats are held back by logging_setup's RepeatFilter, as
for every warning.
"""

from __future__ import annotations

import logging


class OneLineFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            error = record.exc_info[1]
            record.exc_info = None
            record.exc_text = None
            record.msg = f"{record.getMessage()}: {type(error).__name__}: {error}"
            record.args = ()
        return True
