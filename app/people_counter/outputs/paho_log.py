"""paho's log, without its line per reconnect attempt while the broker is away.

paho 2.2 logs "Client is not connected" at ERROR on every attempt (1 s, 2 s, ... 30 s apart) for
as long as the broker is down. The publisher already warns once when the broker cannot be
reached, so that line is debug: a counter with no broker (an offline run, a broker restart)
keeps a quiet log.
"""

from __future__ import annotations

import logging

_NOT_CONNECTED = "Client is not connected"


class _RetriesAtDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG and str(record.msg).startswith(_NOT_CONNECTED):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            # The logger's level was checked at ERROR before this filter ran: check it again.
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def paho_logger(name: str) -> logging.Logger:
    """The logger to hand to paho's `enable_logger`."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, _RetriesAtDebug) for f in logger.filters):
        logger.addFilter(_RetriesAtDebug())
    return logger
