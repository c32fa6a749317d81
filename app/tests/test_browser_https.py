"""The dashboard over HTTPS in Debian's Chromium, as a device serves it: a self-signed
certificate like the one the role makes, which the browser accepts because it is told this
certificate's key (its SPKI hash), and nothing else; plain HTTP only redirects to it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testsupport.browser import CHROMIUM, CHROMIUM_ARGS, accept_only
from testsupport.helpers import free_port
from testsupport.live_stack import DashboardProcess, short_tmp

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """What roles/people_counter/tasks/tls.yml makes on a device, for 127.0.0.1."""
    cert, key = directory / "dashboard.crt", directory / "dashboard.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=test-device", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def https_dashboard() -> Iterator[tuple[DashboardProcess, int, Path]]:
    with short_tmp() as run:
        cert, key = _self_signed(run)
        port, redirect_port = free_port(), free_port()
        extra = {
            "tls": {"cert_file": str(cert), "key_file": str(key)},
            "listen": {"host": "127.0.0.1", "port": port, "redirect_http_port": redirect_port},
        }
        with DashboardProcess(run, None, run / "mjpeg.sock", port=port, extra=extra) as dashboard:
            yield dashboard, redirect_port, cert


def test_the_browser_logs_in_over_https_with_the_device_s_certificate_accepted(
    https_dashboard: tuple[DashboardProcess, int, Path],
) -> None:
    from playwright.sync_api import Error, sync_playwright

    dashboard, redirect_port, cert = https_dashboard
    accept = accept_only(cert.read_bytes())
    with sync_playwright() as p:
        untold = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
                untold.new_page().goto(dashboard.url + "/login")
        finally:
            untold.close()

        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, accept])
        try:
            page = browser.new_page()
            # Plain HTTP only redirects: the login page is the HTTPS one.
            page.goto(f"http://127.0.0.1:{redirect_port}/")
            assert page.url.startswith(dashboard.url + "/login"), page.url
            page.fill("input[name=password]", dashboard.password)
            page.click("button[type=submit]")
            page.wait_for_url(dashboard.url + "/")
            cookies = page.context.cookies()
            assert cookies and all(c["secure"] and c["httpOnly"] for c in cookies), cookies
        finally:
            browser.close()
