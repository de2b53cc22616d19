"""Snippets of the documentation that run without a server, run as written.

The metrics URLconf of ``docs/observability.md`` reads its bearer token from the
environment: it must import with the variable unset (every ``manage.py`` command
imports the URLconf's modules), and then open the view to no token.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory

from tests.snippets import blocks_under

PAGE = "docs/observability.md"
SCRAPER = "From `replica_router.urls`, and for a scraper"


def token_urlconf() -> str:
    (block,) = [b for b in blocks_under(PAGE, SCRAPER, "python") if "bearer_token" in b]
    return block


def run_urlconf(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "docs_urls"}
    exec(compile(source, f"{PAGE} (urls.py)", "exec"), namespace)
    return namespace


def metrics_kwargs(namespace: dict[str, Any]) -> dict[str, Any]:
    (pattern,) = namespace["urlpatterns"]
    return dict(pattern.default_args)


def test_metrics_token_snippet_imports_with_the_variable_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Proves: with METRICS_TOKEN unset the documented urls.py imports (no KeyError),
    and the view then refuses an anonymous request and any bearer token."""
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    kwargs = metrics_kwargs(run_urlconf(token_urlconf()))
    assert kwargs == {"bearer_token": None}
    from replica_router import views

    factory = RequestFactory()
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer "}, {"HTTP_AUTHORIZATION": "Bearer None"}):
        request = factory.get("/metrics/replicas/", **headers)
        with pytest.raises(PermissionDenied):
            views.metrics(request, **kwargs)


def test_metrics_token_snippet_opens_to_the_token(
    monkeypatch: pytest.MonkeyPatch, offline: dict[str, Any]
) -> None:
    """Proves: with METRICS_TOKEN set, the documented view serves metrics to that
    bearer token and refuses another."""
    monkeypatch.setenv("METRICS_TOKEN", "doc-token-123")
    kwargs = metrics_kwargs(run_urlconf(token_urlconf()))
    from replica_router import views

    factory = RequestFactory()
    wrong = factory.get("/metrics/replicas/", HTTP_AUTHORIZATION="Bearer other")
    with pytest.raises(PermissionDenied):
        views.metrics(wrong, **kwargs)
    right = factory.get("/metrics/replicas/", HTTP_AUTHORIZATION="Bearer doc-token-123")
    response = views.metrics(right, **kwargs)
    assert response.status_code == 200
    assert b"replica_router_node_state" in response.content


def test_address_snippet_is_a_urlconf() -> None:
    """Proves: the documented address-list URLconf runs as written."""
    (block,) = [b for b in blocks_under(PAGE, SCRAPER, "python") if "allowed_ips" in b]
    assert metrics_kwargs(run_urlconf(block)) == {"allowed_ips": ["10.0.0.0/8"]}
