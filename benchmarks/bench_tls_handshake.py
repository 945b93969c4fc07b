"""TLS handshake CPU, server side and agent side, by the key type of the frontend certificate.

.venv/bin/python benchmarks/bench_tls_handshake.py [--handshakes 500] [--json]

The agent listener's context (``server_ssl_context``, no session tickets) and the agent's
pinned one (``pinned_ssl_context``: the deployment CA only, strict X.509 checks), joined by
memory BIOs in one thread, so each side's CPU is measured alone (``time.process_time``
around each side's steps): no sockets, no event loop, no Python framing. Key types: ECDSA
P-256 (what ``peregrine config generate`` makes, ``config/pki.py``), and for comparison
RSA-2048 and Ed25519 certificates from a CA of the same type.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from peregrine.config import pki
from peregrine.config.tls import pinned_ssl_context


def _key(kind: str) -> Any:
    if kind == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pair(kind: str) -> tuple[str, pki.KeyPair]:
    """A CA and a server certificate for localhost, both of ``kind``."""
    if kind == "ecdsa-p256":
        ca = pki.create_ca()
        return ca.cert_pem, pki.issue_server_cert(ca, ["localhost"])
    ca_key, key = _key(kind), _key(kind)
    digest = None if kind == "ed25519" else hashes.SHA256()
    now = dt.datetime.now(dt.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench CA {kind}")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, digest)
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False, encipher=kind == "rsa-2048"), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, digest)
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return ca_cert.public_bytes(serialization.Encoding.PEM).decode(), pki.KeyPair(pem, _pem(key))


def _usage(cert_sign: bool, encipher: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=encipher,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def measure(kind: str, handshakes: int) -> dict[str, Any]:
    ca_pem, server = _pair(kind)
    with tempfile.TemporaryDirectory() as directory:
        cert, key = Path(directory, "s.pem"), Path(directory, "s.key")
        cert.write_text(server.cert_pem)
        key.write_text(server.key_pem)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        server_ctx.load_cert_chain(cert, key)
    server_ctx.num_tickets = 0  # as the agent listener (server/app.py)
    client_ctx = pinned_ssl_context(ca_pem)
    server_cpu = client_cpu = 0.0
    version = ""
    for _ in range(handshakes):
        s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
        server_side = server_ctx.wrap_bio(s_in, s_out, server_side=True)
        client_side = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
        done = {"server": False, "client": False}
        while not all(done.values()):
            for name, side, source, sink in (
                ("client", client_side, c_out, s_in),
                ("server", server_side, s_out, c_in),
            ):
                started = time.process_time()
                if not done[name]:
                    try:
                        side.do_handshake()
                        done[name] = True
                    except ssl.SSLWantReadError:
                        pass
                spent = time.process_time() - started
                if name == "server":
                    server_cpu += spent
                else:
                    client_cpu += spent
                sink.write(source.read())
        version = str(server_side.version())
    return {
        "key": kind,
        "tls": version,
        "server_ms": round(1000 * server_cpu / handshakes, 3),
        "agent_ms": round(1000 * client_cpu / handshakes, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--handshakes", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [measure(kind, args.handshakes) for kind in ("ecdsa-p256", "rsa-2048", "ed25519")]
    result = {"openssl": ssl.OPENSSL_VERSION, "handshakes": args.handshakes, "by_key": results}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(ssl.OPENSSL_VERSION, f"{args.handshakes} handshakes each, CPU ms per handshake")
    for row in results:
        server, agent = row["server_ms"], row["agent_ms"]
        print(f"  {row['key']:11} {row['tls']}  server {server:.3f}  agent {agent:.3f}")


if __name__ == "__main__":
    main()
