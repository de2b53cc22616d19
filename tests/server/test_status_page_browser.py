"""The staff status page in a real headless Chromium, against Django's live server and
the session's real cluster with the standby stopped.

Needs Debian's ``chromium`` (or ``CHROMIUM=/path``): run it with ``make test-browser``,
which installs it when absent. ``make test`` leaves this file out. With
``RR_UPDATE_SCREENSHOT=1`` the screenshot is also written to
``example_project/screenshots/status_page.png`` (the README's picture).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.web import live_server, user, web_settings
from tests.support import ROOT, WINDOW, LocalCluster, states, wait_until

SCREENSHOT = ROOT / "example_project" / "screenshots" / "status_page.png"


def chromium() -> str:
    found = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if not found:
        pytest.fail(
            "Chromium not found: run `make test-browser` (installs Debian's chromium as root) "
            "or set CHROMIUM to its path"
        )
    return found


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run with a fresh profile of its own, bounded in time."""
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",  # root in CI; the page is our own
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


@pytest.fixture
def server(healthy: LocalCluster) -> Iterator[str]:
    with web_settings(), live_server() as url:
        yield url


def test_status_page_in_chromium_with_standby_down(
    server: str, healthy: LocalCluster, tmp_path: Path
) -> None:
    """Standby stopped: Chromium, logged in as staff, renders the admin-look page with the
    replica's row ``down`` and the primary's ``up``; the admin's stylesheet is served; a
    screenshot is taken."""
    user("rr-staff", staff=True)
    pk = _get_json(f"{server}/write/")["pk"]
    for _ in range(40):
        _get_json(f"{server}/read/{pk}/")
    healthy.stop("standby")
    wait_until(lambda: states()["replica"] == "down", WINDOW + 5)
    for _ in range(15):
        _get_json(f"{server}/read/{pk}/")  # all to the primary now

    page = f"{server}/login-as/?u=rr-staff&next=/replicas/"
    dom = run_chromium(["--dump-dom", page], tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    rows = dict(re.findall(r'data-alias="(\w+)" data-state="(\w+)"', html))
    assert rows == {"default": "up", "replica": "down"}, html[-3000:]
    assert "Django administration" in html  # the admin's header
    assert 'rr-badge rr-degraded">degraded<' in html
    assert re.search(r"<strong>connection_(refused|failure)</strong>", html)
    css = re.search(r'href="(/static/admin/css/base\.css)"', html)
    assert css, "admin stylesheet linked"
    with urllib.request.urlopen(server + css.group(1), timeout=10) as resp:
        assert resp.status == 200 and b"--primary" in resp.read()

    shot = tmp_path / "status_page.png"
    result = run_chromium(
        ["--window-size=1400,470", f"--screenshot={shot}", page], tmp_path / "profile-shot"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    if os.environ.get("RR_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(data)


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        data: dict[str, object] = json.loads(resp.read())
        return data
