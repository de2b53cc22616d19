"""The readiness view and the staff status page, through Django's test client, against
the session's real primary + standby (stopped for real where a test needs a node down)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from django.test import Client, override_settings
from django.test.utils import setup_test_environment, teardown_test_environment

import replica_router
from replica_router import _runtime, context
from tests.server.test_health import databases
from tests.server.web import METRICS_TOKEN, user, web_settings
from tests.support import WINDOW, LocalCluster, states, wait_until

SECRET = "pw-Never-Shown-7731"


@pytest.fixture(scope="module", autouse=True)
def _templates_recorded() -> Iterator[None]:
    """Let ``response.templates`` list the templates rendered (as Django's runner does)."""
    setup_test_environment()
    try:
        yield
    finally:
        teardown_test_environment()


@pytest.fixture
def web(healthy: LocalCluster) -> Iterator[LocalCluster]:
    """The healthy session cluster, with sessions, auth, templates and the admin."""
    with web_settings():
        yield healthy


@pytest.fixture
def staff_client(web: LocalCluster) -> Client:
    client = Client()
    client.force_login(user("rr-staff", staff=True))
    return client


def _no_node_details(body: bytes, cluster: LocalCluster) -> None:
    text = body.decode()
    for leak in ("127.0.0.1", str(cluster.port("primary")), str(cluster.port("standby"))):
        assert leak not in text, text
    for alias in ("default", "replica"):
        assert alias not in text, text


# ------------------------------------------------------------------ readiness


def test_readiness_ok_for_anonymous_is_one_word(web: LocalCluster) -> None:
    """Both nodes up: 200 ``{"status": "ok"}``, nothing else (no alias, host or port),
    never cached; only GET/HEAD."""
    client = Client()
    r = client.get("/replicas/ready/")
    assert r.status_code == 200
    assert r["Content-Type"] == "application/json"
    assert json.loads(r.content) == {"status": "ok"}
    assert "no-cache" in r["Cache-Control"] and "no-store" in r["Cache-Control"]
    _no_node_details(r.content, web)
    assert client.head("/replicas/ready/").status_code == 200
    assert client.post("/replicas/ready/").status_code == 405


def test_readiness_degraded_with_standby_down(web: LocalCluster) -> None:
    """Standby stopped: still 200 (the primary serves reads), the word is ``degraded``."""
    web.stop("standby")
    wait_until(lambda: states()["replica"] == "down", WINDOW + 5)
    r = Client().get("/replicas/ready/")
    assert r.status_code == 200
    assert json.loads(r.content) == {"status": "degraded"}


def test_readiness_unavailable_with_primary_down(web: LocalCluster) -> None:
    """Primary stopped: 503 ``{"status": "unavailable"}``; anonymous still get no details."""
    web.stop("primary")
    wait_until(lambda: states()["default"] == "down", WINDOW + 5)
    r = Client().get("/replicas/ready/")
    assert r.status_code == 503
    assert json.loads(r.content) == {"status": "unavailable"}
    _no_node_details(r.content, web)


def test_readiness_gives_staff_node_states_but_no_hosts(staff_client: Client) -> None:
    """Staff also get each node's alias, state, roles and lag; still no host or error."""
    r = staff_client.get("/replicas/ready/")
    assert r.status_code == 200
    body = json.loads(r.content)
    assert body["status"] == "ok"
    assert [(n["alias"], n["state"], n["observed_role"]) for n in body["nodes"]] == [
        ("default", "up", "primary"),
        ("replica", "up", "replica"),
    ]
    assert "127.0.0.1" not in r.content.decode()
    assert all("host" not in n and "last_error" not in n for n in body["nodes"])


# ------------------------------------------------------------------ status page


def test_status_page_is_staff_only(web: LocalCluster) -> None:
    """Anonymous: redirected to the admin's login; a logged-in non-staff user: 403."""
    r = Client().get("/replicas/")
    assert r.status_code == 302
    assert r["Location"] == "/admin/login/?next=/replicas/"
    client = Client()
    client.force_login(user("rr-not-staff", staff=False))
    assert client.get("/replicas/").status_code == 403


def test_status_page_in_admin_look_with_live_values(staff_client: Client) -> None:
    """Staff see the page built on ``admin/base_site.html``: one row per node with state,
    configured and observed role, lag, latency and reads by reason; it refreshes itself
    every 5 s by default."""
    # Under a test environment (set up here to record templates) routed reads all go
    # to the primary, uncounted, and the staff user's creation pinned this context:
    # make weighted decisions in the core itself, with that pin dropped.
    context.end_request()
    cluster = _runtime.get_cluster()
    for _ in range(50):
        cluster.read()
    # Lag is known once a probe round has seen both nodes.
    wait_until(lambda: replica_router.status()[1]["lag_bytes"] is not None, 5)
    r = staff_client.get("/replicas/")
    assert r.status_code == 200
    used = [t.name for t in r.templates]
    assert "replica_router/status_admin.html" in used
    assert "admin/base_site.html" in used and "admin/base.html" in used
    html = r.content.decode()
    assert '<meta http-equiv="refresh" content="5">' in html
    assert 'id="site-name"' in html  # the admin's header
    assert 'class="breadcrumbs"' in html
    rows = dict(re.findall(r'data-alias="(\w+)" data-state="(\w+)"', html))
    assert rows == {"default": "up", "replica": "up"}
    assert "primary / primary" in html and "replica / replica" in html
    assert "weighted: " in html
    assert re.search(r"\d+\.\d ms", html), "probe latency shown"
    assert re.search(r"\d+(\.\d)? (B|KiB|MiB)", html), "lag in bytes shown"
    assert 'Cluster: <span class="rr-badge rr-ok">ok</span>' in html


def test_status_page_refresh_interval_is_a_view_kwarg(staff_client: Client) -> None:
    """``{"refresh_seconds": 2}`` in the URLconf: refresh every 2 s; ``0``: never."""
    html = staff_client.get("/replicas-fast/").content.decode()
    assert '<meta http-equiv="refresh" content="2">' in html
    html = staff_client.get("/replicas-still/").content.decode()
    assert 'http-equiv="refresh"' not in html


def test_status_page_shows_a_down_node_with_its_error(
    staff_client: Client, web: LocalCluster
) -> None:
    """Standby stopped: its row says ``down`` with the error class and message, and the
    cluster's word is ``degraded``."""
    web.stop("standby")
    wait_until(lambda: states()["replica"] == "down", WINDOW + 5)
    html = staff_client.get("/replicas/").content.decode()
    rows = dict(re.findall(r'data-alias="(\w+)" data-state="(\w+)"', html))
    assert rows == {"default": "up", "replica": "down"}
    assert re.search(r"<strong>connection_(refused|failure)</strong>", html), html
    assert 'rr-badge rr-degraded">degraded<' in html


def test_status_page_without_admin_is_standalone(healthy: LocalCluster) -> None:
    """Without ``django.contrib.admin``: the standalone template, the same table;
    anonymous callers get 403 (there is no login page to send them to)."""
    with web_settings(admin=False):
        assert Client().get("/replicas/").status_code == 403
        client = Client()
        client.force_login(user("rr-staff", staff=True))
        r = client.get("/replicas/")
        assert r.status_code == 200
        used = [t.name for t in r.templates]
        assert "replica_router/status_standalone.html" in used
        assert not any(name.startswith("admin/") for name in used)
        html = r.content.decode()
        assert dict(re.findall(r'data-alias="(\w+)" data-state="(\w+)"', html)) == {
            "default": "up",
            "replica": "up",
        }


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES:UserWarning")
def test_password_never_shown(staff_client: Client, web: LocalCluster) -> None:
    """A replica configured with a (wrong) password: the page, the staff readiness and
    the metrics show its authentication failure, never the password."""
    with override_settings(DATABASES=databases(web, PASSWORD=SECRET)):
        wait_until(lambda: states()["replica"] == "misconfigured", WINDOW + 5)
        page = staff_client.get("/replicas/").content.decode()
        assert "authentication_failed" in page
        assert "password authentication failed" in page
        ready = staff_client.get("/replicas/ready/").content.decode()
        assert '"misconfigured"' in ready
        scraped = staff_client.get("/replicas/metrics/").content.decode()
        assert 'replica_router_node_state{alias="replica",state="misconfigured"} 1.0' in scraped
        for text in (page, ready, scraped):
            assert SECRET not in text


# ------------------------------------------------------------------ metrics access


def test_metrics_view_access(web: LocalCluster) -> None:
    """``replica_router.urls``' metrics: staff only. Mounted with ``allowed_ips``: open to
    those addresses; with ``bearer_token``: open to that token only."""
    anonymous = Client()
    assert anonymous.get("/replicas/metrics/").status_code == 403
    staff = Client()
    staff.force_login(user("rr-staff", staff=True))
    r = staff.get("/replicas/metrics/")
    assert r.status_code == 200
    assert r["Content-Type"].startswith("text/plain; version=")
    assert b"replica_router_node_state" in r.content
    assert anonymous.get("/metrics-loopback/").status_code == 200
    assert anonymous.get("/metrics-loopback/", REMOTE_ADDR="10.1.2.3").status_code == 403
    assert anonymous.get("/metrics-token/").status_code == 403
    assert anonymous.get("/metrics-token/", HTTP_AUTHORIZATION="Bearer nope").status_code == 403
    ok = anonymous.get("/metrics-token/", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    assert ok.status_code == 200


def test_metrics_refusal_logs_no_traceback(
    web: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Proves (issue 16, point 6): an anonymous request to the metrics view gets 403
    and leaves no traceback in the log (Django logs the response as a warning only)."""
    with caplog.at_level("WARNING", logger="django.request"):
        assert Client().get("/replicas/metrics/").status_code == 403
        assert Client().get("/metrics-token/").status_code == 403
    refusals = [r for r in caplog.records if r.name == "django.request"]
    assert refusals, "Django still logs the refused request"
    assert all(r.exc_info is None for r in refusals), [r.getMessage() for r in refusals]
