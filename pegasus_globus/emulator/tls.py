"""TLS for what real clients will only call over ``https://``: globus-cli refuses a GCS
Manager URL that is not one. The emulator answers TLS and plain HTTP on one port (a
connection's first byte tells them apart), with a self-signed certificate kept under its
root, which clients trust through ``GLOBUS_SDK_VERIFY_SSL``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
from pathlib import Path

from ..files import write_atomically

TLS_HANDSHAKE = 0x16  # the first byte of a TLS ClientHello record; never of an HTTP method
CERTIFICATE_DAYS = 3650


def _names(host: str) -> list[str]:
    """The names a client may call the emulator by: loopback, this machine, and ``host``."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn(), host]
    return [name for name in dict.fromkeys(names) if name and name not in ("0.0.0.0", "::")]


def certificate(directory: Path, host: str) -> Path:
    """The emulator's certificate (``directory/cert.pem``, its key beside it, mode 0600),
    made on first use and kept, so a client told to trust it keeps trusting it. The key is
    written first: a certificate on disk always has its key."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if cert.is_file() and key.is_file():
        return cert
    from cryptography import x509  # globus-sdk's own dependency; only when a root is new
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Globus emulator")])
    alternatives: list[x509.GeneralName] = []
    for name in _names(host):
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.timezone.utc)
    issued = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(private.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=CERTIFICATE_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(key, private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode())  # mode 0600, as mkstemp makes it
    write_atomically(cert, issued.public_bytes(serialization.Encoding.PEM).decode())
    os.chmod(cert, 0o644)  # public: any client account may trust it
    return cert


def server_context(cert: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, cert.with_name("key.pem"))
    return context


def wants_tls(connection: socket.socket) -> bool:
    """Whether a client opened ``connection`` with a TLS handshake (read, not consumed)."""
    first = connection.recv(1, socket.MSG_PEEK)
    return bool(first) and first[0] == TLS_HANDSHAKE
