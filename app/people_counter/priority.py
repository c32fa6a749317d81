"""Make a unit's Nice= hold against the rest of the device, not only within the service.

With the kernel's autogroups (on by default in Debian's kernels), CPU time is shared
out between sessions first, and every systemd service is a session of its own, so a
process's nice value only orders it against its own threads and children. A service
that leads its session therefore copies its nice value to the session's autogroup:
the counting work then yields to ssh, Ansible and the rest of the device when the CPU
is short, and still takes every idle cycle. Where the cpu cgroup controller is on, the
kernel ignores autogroups; there CPUWeight= in a drop-in is the knob (the units set none).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger("people_counter.priority")

AUTOGROUP = Path("/proc/self/autogroup")
# The kernel takes one autogroup change per 100 ms machine-wide (EAGAIN otherwise).
RETRIES = 30
RETRY_DELAY_S = 0.05


def share_nice_with_autogroup(autogroup: Path = AUTOGROUP) -> int | None:
    """Give this session's autogroup the process's nice value; return it, or None if nothing was done."""
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    if nice <= 0 or os.getsid(0) != os.getpid():
        # Not lowered, or not a service: a command run from a shell leaves the shell's session alone.
        return None
    for _ in range(RETRIES):
        try:
            autogroup.write_text(f"{nice}\n")
        except FileNotFoundError:
            return None  # a kernel without autogroups: nice already holds machine-wide
        except BlockingIOError:
            time.sleep(RETRY_DELAY_S)
            continue
        except OSError as error:
            log.warning("cannot lower the CPU share of this service's session to nice %d: %s", nice, error)
            return None
        return nice
    log.warning("cannot lower the CPU share of this service's session to nice %d: the kernel kept refusing", nice)
    return None
