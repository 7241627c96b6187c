"""A throw-away certificate authority made with ``openssl`` for the TLS tests.

:func:`make_ca` writes, in one folder: a CA (``ca.pem``), a server certificate
for ``localhost`` and ``127.0.0.1`` signed by it (``server.pem`` /
``server.key``), a client certificate (``client.pem`` / ``client.key``), and a
second CA that signed none of them (``other-ca.pem``), for the "wrong CA"
cases. Keys are EC P-256: generated in milliseconds.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Authority:
    """The files of :func:`make_ca`."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def other_ca(self) -> Path:
        return self.folder / "other-ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.folder / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.folder / "client.key"


def openssl_missing() -> str | None:
    """Why certificates can't be made here, or None."""
    return None if shutil.which("openssl") else "openssl is not installed (apt-get install -y openssl)"


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=30)


def _key(folder: Path, name: str) -> None:
    _openssl(folder, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name)
    (folder / name).chmod(0o600)


def _self_signed(folder: Path, name: str, subject: str) -> None:
    _key(folder, f"{name}.key")
    _openssl(
        folder, "req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.pem",
        "-days", "2", "-subj", subject,
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def _signed(folder: Path, name: str, subject: str, extensions: str) -> None:
    _key(folder, f"{name}.key")
    _openssl(folder, "req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
    (folder / f"{name}.ext").write_text(extensions)
    _openssl(
        folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
    )  # fmt: skip


def make_ca(folder: Path) -> Authority:
    """Write a CA, a server and a client certificate signed by it, and an unrelated CA into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    _self_signed(folder, "ca", "/CN=rabbit-platform test CA")
    _self_signed(folder, "other-ca", "/CN=some other CA")
    _signed(
        folder,
        "server",
        "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    _signed(folder, "client", "/CN=platform", "extendedKeyUsage=clientAuth\n")
    return Authority(folder)
