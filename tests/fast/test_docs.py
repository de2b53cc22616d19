"""Snippets of the documentation that run without a server, run as written.

The metrics URLconf of ``docs/observability.md`` reads its bearer token from the
environment: it must import with the variable unset (every ``manage.py`` command
imports the URLconf's modules), and then open the view to no token.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import RequestFactory

from tests.snippets import ROOT, block_under, blocks_under

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
        assert views.metrics(request, **kwargs).status_code == 403


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
    assert views.metrics(wrong, **kwargs).status_code == 403
    right = factory.get("/metrics/replicas/", HTTP_AUTHORIZATION="Bearer doc-token-123")
    response = views.metrics(right, **kwargs)
    if importlib.util.find_spec("prometheus_client") is None:
        # The optional extra is not installed (a matrix cell): the view says so.
        assert response.status_code == 501, response.content
        return
    assert response.status_code == 200
    assert b"replica_router_node_state" in response.content


def test_address_snippet_is_a_urlconf() -> None:
    """Proves: the documented address-list URLconf runs as written."""
    (block,) = [b for b in blocks_under(PAGE, SCRAPER, "python") if "allowed_ips" in b]
    assert metrics_kwargs(run_urlconf(block)) == {"allowed_ips": ["10.0.0.0/8"]}


#: Pages that other branches of this release add; linked already from the index.
PAGES_FROM_OTHER_BRANCHES: set[str] = set()
LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces
    turned into hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    in_code = False
    found: set[str] = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"^#+\s+(.*)$", line)):
            found.add(github_anchor(m.group(1)))
    return found


def doc_pages() -> list[Path]:
    return [
        ROOT / "README.md",
        ROOT / "CONTRIBUTING.md",
        ROOT / "example_project" / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
    ]


def test_relative_links_resolve() -> None:
    """Proves: every relative link of the README, CONTRIBUTING.md, the example's README
    and docs/ names a file of the repository (or a page another branch adds), and every
    fragment names a heading of its page, as the repository page renders them."""
    broken: list[str] = []
    for page in doc_pages():
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):
                continue  # an absolute URL
            path, _, fragment = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: {target}"
            relative = resolved.relative_to(ROOT).as_posix()
            if not resolved.exists():
                if relative not in PAGES_FROM_OTHER_BRANCHES:
                    broken.append(f"{where} (no such file)")
                continue
            if fragment and fragment not in anchors(resolved):
                broken.append(f"{where} (no such heading)")
    assert broken == []


def test_docs_name_nothing_outside_the_repository() -> None:
    """Proves: no page cites the project's private notes (a research file, a design
    card) that a reader of the repository cannot open."""
    for page in doc_pages():
        text = page.read_text(encoding="utf-8")
        for private in ("RESEARCH.md", "DESIGN.md", "design card"):
            assert private not in text, (page, private)


def test_readme_is_the_users_path() -> None:
    """Proves: the README stays short, its Quickstart comes on the first screen with
    the router's backend in its one settings block, and it names `make demo` and
    `make test`."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = readme.splitlines()
    assert len(lines) <= 300, len(lines)
    assert lines.index("## Quickstart") < 60
    quickstart = block_under("README.md", "Quickstart", "python")
    assert quickstart.count('"ENGINE": "replica_router.backends.postgresql"') == 2
    assert "make demo" in readme and "make test" in readme
