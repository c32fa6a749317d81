#!/usr/bin/env python3
"""Boot systemd-nspawn Debian test hosts: see README.md next to this file."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nspawn_launcher.cli import main

if __name__ == "__main__":
    sys.exit(main())
