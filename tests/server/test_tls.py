"""TLS on probe connections, against a real server with ``ssl = on``.

The session primary gets a certificate for IP 127.0.0.1 from a throwaway CA, and ``ssl``
is switched on by reload; both are undone after the module. The standby keeps
``ssl = off``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

import replica_router
from tests.support import LocalCluster, wait_until

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES:UserWarning")

PROBE_APP = "replica_router probe"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A throwaway certificate authority: (certificate, key)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
        "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
    )  # fmt: skip
    return cert, key


def _server_cert(directory: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 signed by ``ca``: (certificate, key)."""
    cert, key, csr = directory / "server.crt", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def tls_primary(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Turns TLS on for the session primary (a certificate signed by a throwaway CA);
    yields the CA file that verifies it."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make a test certificate")
    work = tmp_path_factory.mktemp("tls")
    ca = _ca(work, "test-ca")
    cert, key = _server_cert(work, ca)
    data = Path(cluster.data_dir("primary"))
    owner = data.stat()
    for src, mode in ((cert, 0o644), (key, 0o600)):
        dst = data / src.name
        shutil.copy(src, dst)
        os.chown(dst, owner.st_uid, owner.st_gid)
        os.chmod(dst, mode)
    cluster.sql("primary", f"ALTER SYSTEM SET ssl_cert_file = '{data / cert.name}'")
    cluster.sql("primary", f"ALTER SYSTEM SET ssl_key_file = '{data / key.name}'")
    cluster.sql("primary", "ALTER SYSTEM SET ssl = on")
    cluster.sql("primary", "SELECT pg_reload_conf()")
    wait_until(lambda: cluster.sql("primary", "SHOW ssl") == "on", 10)
    try:
        yield ca[0]
    finally:
        for setting in ("ssl", "ssl_cert_file", "ssl_key_file"):
            cluster.sql("primary", f"ALTER SYSTEM RESET {setting}")
        cluster.sql("primary", "SELECT pg_reload_conf()")


def _databases(
    cluster: LocalCluster,
    primary_options: dict[str, Any],
    replica_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "default": {**cluster.dsn("primary"), "OPTIONS": {"connect_timeout": 2, **primary_options}},
        "replica": {
            **cluster.dsn("standby"),
            "OPTIONS": {"connect_timeout": 2, **(replica_options or {})},
        },
    }


def _node(alias: str) -> dict[str, Any]:
    return next(n for n in replica_router.status() if n["alias"] == alias)


def _probe_uses_tls(cluster: LocalCluster) -> bool:
    return (
        cluster.sql(
            "primary",
            "SELECT coalesce(bool_or(s.ssl), false) FROM pg_stat_ssl s "
            f"JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '{PROBE_APP}'",
        )
        == "t"
    )


@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_probe_speaks_tls_and_verifies(healthy: LocalCluster, tls_primary: Path, mode: str) -> None:
    """Proves: with sslmode require / verify-ca / verify-full (root = the test CA) the
    primary is probed over TLS and is up."""
    options = {"sslmode": mode}
    if mode != "require":
        options["sslrootcert"] = str(tls_primary)
    with override_settings(DATABASES=_databases(healthy, options)):
        wait_until(lambda: _node("default")["state"] == "up", 10)
        wait_until(lambda: _probe_uses_tls(healthy), 10)
        assert _node("default")["last_error"] is None


def test_wrong_root_is_a_configuration_error(
    healthy: LocalCluster, tls_primary: Path, tmp_path: Path
) -> None:
    """Proves: a certificate that does not chain to ``sslrootcert`` makes the node
    ``misconfigured`` (class tls_failed), not merely down."""
    other, _ = _ca(tmp_path, "other-ca")
    options = {"sslmode": "verify-full", "sslrootcert": str(other)}
    with override_settings(DATABASES=_databases(healthy, options)):
        wait_until(lambda: _node("default")["state"] == "misconfigured", 10)
        node = _node("default")
        assert node["error_class"] == "tls_failed", node
        assert "certificate" in (node["last_error"] or "").lower(), node


def test_require_against_a_server_without_tls(healthy: LocalCluster, tls_primary: Path) -> None:
    """Proves: sslmode require on a node with ``ssl = off`` (the standby) is reported
    as a TLS configuration error; prefer falls back to plain TCP and stays up."""
    with override_settings(DATABASES=_databases(healthy, {}, {"sslmode": "require"})):
        wait_until(lambda: _node("replica")["state"] == "misconfigured", 10)
        assert _node("replica")["error_class"] == "tls_failed"
    with override_settings(DATABASES=_databases(healthy, {}, {"sslmode": "prefer"})):
        wait_until(lambda: _node("replica")["state"] == "up", 10)


def test_verify_without_root_names_the_option(healthy: LocalCluster) -> None:
    """Proves: verify-full without ``sslrootcert`` is a clear misconfiguration that
    names the missing option."""
    with override_settings(DATABASES=_databases(healthy, {}, {"sslmode": "verify-full"})):
        wait_until(lambda: _node("replica")["state"] == "misconfigured", 10)
        assert "sslrootcert" in (_node("replica")["last_error"] or "")
