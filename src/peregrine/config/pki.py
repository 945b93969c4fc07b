"""The deployment's own small PKI: one CA, and TLS certificates for the frontends.

Agents trust only this CA (it is pinned in their configuration), never the system roots, so a
TLS-intercepting proxy or a server from another deployment is refused even if it holds a
publicly trusted certificate. Keys are ECDSA P-256: every TLS stack accepts it, unlike Ed25519
certificates. The certificates follow RFC 5280 closely enough for OpenSSL's strict X.509 mode
(key identifiers, critical basic constraints and key usage), which newer Pythons turn on.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=730)
#: Certificates start a little in the past so a client whose clock lags still accepts them.
CLOCK_SKEW = dt.timedelta(hours=1)
#: Every server certificate also names these, so a local agent and health checks always work.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class PKIError(Exception):
    """A certificate or key that cannot be read or used; the message says which and why."""


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM."""

    cert_pem: str
    key_pem: str


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_ca(name: str | None = None) -> KeyPair:
    """A new deployment CA. Its name carries a random id so two deployments never look alike."""
    key = _new_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Peregrine"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, name or f"Peregrine deployment CA {secrets.token_hex(4)}"
            ),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(_cert_pem(cert), _key_pem(key))


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host.lower())


def server_names(hosts: Iterable[str]) -> list[str]:
    """The names a frontend certificate should carry: the given hosts, then loopback and this
    machine's host name, without duplicates, order kept (the first is the common name)."""
    out: list[str] = []
    for host in [*hosts, *LOOPBACK_NAMES, socket.gethostname()]:
        h = host.strip("[]").lower()
        if h and h not in out:
            out.append(h)
    return out


def load_certificate(pem: str | bytes, what: str = "certificate") -> x509.Certificate:
    """Parse one PEM certificate, with an error that says which one is broken."""
    try:
        return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    except ValueError as exc:
        raise PKIError(f"{what} is not a valid PEM certificate: {exc}") from exc


def load_private_key(pem: str | bytes, what: str = "private key") -> ec.EllipticCurvePrivateKey:
    """Parse an unencrypted PEM private key (the CA's or a frontend's)."""
    try:
        key = serialization.load_pem_private_key(
            pem.encode() if isinstance(pem, str) else pem, password=None
        )
    except (ValueError, TypeError) as exc:
        raise PKIError(f"{what} is not a valid unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PKIError(f"{what} is a {type(key).__name__}, expected an ECDSA key")
    return key


def issue_server_cert(
    ca: KeyPair, hosts: Sequence[str], validity: dt.timedelta = SERVER_VALIDITY
) -> KeyPair:
    """A frontend certificate signed by the CA, valid for ``hosts`` (DNS names or IPs) plus
    loopback. Used at generation and whenever a frontend is added or its certificate renewed."""
    ca_cert = load_certificate(ca.cert_pem, "CA certificate")
    ca_key = load_private_key(ca.key_pem, "CA key")
    if ca_cert.public_key() != ca_key.public_key():
        raise PKIError("the CA key does not belong to the CA certificate")
    names = server_names(hosts)
    key = _new_key()
    now = _now()
    not_after = min(now + validity, ca_cert.not_valid_after_utc)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Peregrine"),
                    x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64]),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(_cert_pem(cert), _key_pem(key))


def cert_names(cert_pem: str) -> list[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    cert = load_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName)] + [
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    ]


def verify_issued_by(cert_pem: str, ca_cert_pem: str) -> None:
    """Raise PKIError unless ``cert_pem`` was signed by the CA and is valid now."""
    cert = load_certificate(cert_pem)
    ca_cert = load_certificate(ca_cert_pem, "CA certificate")
    try:
        cert.verify_directly_issued_by(ca_cert)
    except InvalidSignature as exc:
        raise PKIError("certificate signature does not verify against the CA") from exc
    except (ValueError, TypeError) as exc:
        raise PKIError(f"certificate was not issued by this CA: {exc}") from exc
    now = _now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise PKIError(
            f"certificate is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d})"
        )


def fingerprint(cert_pem: str) -> str:
    """SHA-256 fingerprint of a certificate (to compare a pinned CA by eye)."""
    digest = load_certificate(cert_pem).fingerprint(hashes.SHA256()).hex().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def days_left(cert_pem: str) -> float:
    """Days until a certificate expires (negative once it has)."""
    cert = load_certificate(cert_pem)
    return (cert.not_valid_after_utc - _now()).total_seconds() / 86400


def url_host(url: str) -> str:
    """The host part of a frontend URL (IPv6 without brackets)."""
    host = urlsplit(url).hostname
    if not host:
        raise PKIError(f"{url!r} has no host")
    return host
