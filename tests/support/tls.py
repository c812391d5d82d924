"""A throw-away certificate authority and a loopback server certificate, made at test time.

Generated with the `openssl` binary (always present where `git` and Python's `ssl` are; the
`cryptography` package is not a dependency). Nothing is committed: keys live in a pytest temp dir
and die with it. The server certificate names `127.0.0.1`, `::1` and `localhost` in its
subjectAltName, so the only thing a client can object to is the unknown CA.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.tools import require_binary

_DAYS = "2"  # long enough for any test run, short enough to be useless if a key escaped


@dataclass(frozen=True)
class LoopbackCA:
    """`ca_cert` is what a client must trust; `cert`/`key` are what the server presents."""

    ca_cert: Path
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def make_test_ca(directory: Path) -> LoopbackCA:
    """A CA and a server certificate for loopback signed by it, in `directory`."""
    require_binary("openssl", "openssl")
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", _DAYS,
             "-subj", "/CN=streampixel-distribute test CA", "-keyout", "ca.key", "-out", "ca.pem",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
             "-keyout", "server.key", "-out", "server.csr", cwd=directory)
    (directory / "server.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n"
    )
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", _DAYS, "-extfile", "server.ext", "-out", "server.pem",
             cwd=directory)
    return LoopbackCA(directory / "ca.pem", directory / "server.pem", directory / "server.key")


@pytest.fixture(scope="session")
def loopback_ca(tmp_path_factory: pytest.TempPathFactory) -> LoopbackCA:
    return make_test_ca(tmp_path_factory.mktemp("tls"))
