"""people-counter-dashboard: serve the dashboard, hash a password, or check a config.

people-counter-dashboard -c /etc/people-counter/dashboard.yml   serve (the default command)
people-counter-dashboard hash-password [--salt-hex HEX] < pw    print a password hash
people-counter-dashboard check-config FILE                      validate a config file

Only serving loads the web stack, so that checking a config (Ansible does, on the
controller and on each device) takes a fraction of a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from people_counter.cli import version
from people_counter.command_runner import run_command
from people_counter.dashboard.config import DEFAULT_DASHBOARD_CONFIG, load_dashboard_config, read_password_hash
from people_counter.dashboard.passwords import hash_password
from people_counter.errors import UserError


def _cmd_hash_password(args: argparse.Namespace) -> int:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("people-counter-dashboard: give the password on standard input", file=sys.stderr)
        return 2
    # A fixed salt (e.g. derived from the host name) lets Ansible render the same hash twice.
    salt = bytes.fromhex(args.salt_hex) if args.salt_hex else None
    print(hash_password(password, salt))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="people-counter-dashboard", description="The people counter's web page.")
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_DASHBOARD_CONFIG, help="dashboard config (YAML)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="serve the dashboard (the default)")
    hash_p = sub.add_parser("hash-password", help="read a password on stdin, print its hash for auth.password_hash")
    hash_p.add_argument("--salt-hex", help="a fixed salt (hex), for reproducible hashes; random by default")
    check_p = sub.add_parser("check-config", help="validate a dashboard config file")
    check_p.add_argument("file", type=Path)
    args = parser.parse_args(argv)

    def body() -> int:
        try:
            if args.command == "hash-password":
                return _cmd_hash_password(args)
            if args.command == "check-config":
                read_password_hash(load_dashboard_config(args.file))
                print(f"{args.file}: ok")
                return 0
            cfg = load_dashboard_config(args.config)
        except ValueError as error:  # a malformed hash or salt
            raise UserError(str(error)) from None
        from people_counter.dashboard.app import serve  # the web stack, only when serving

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(cfg))
        return 0

    return run_command("people-counter-dashboard", args.verbose, body)


if __name__ == "__main__":
    sys.exit(main())
