"""The agent's identity: an Ed25519 key made on first start, and the client id derived from it.

The client id is ``C.`` followed by the first 16 hex digits of the SHA-256 of the raw public key,
so an id cannot be claimed without the key: on every connection the agent signs the server's
challenge, and the server checks the signature against the key whose hash is the id.

Keys are made, used and checked with PyNaCl (libsodium), not cryptography: the agent needs nothing
else of cryptography (TLS is the standard ``ssl`` module), and cryptography's Rust library alone
would keep 7.6 MB resident in the agent. Ed25519 signatures are deterministic, so a key signs
exactly as it did with cryptography, and its client id is the same.

The key lives in the writeback file (YAML, owner-only, created atomically) as a PKCS #8 PEM
block. A writeback that cannot be read is an error, never silently replaced: replacing it would
make the endpoint a new client and orphan its history, which an operator should decide, not the
agent.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey, VerifyKey

from peregrine.config.files import SECRET_MODE, create_exclusive, ensure_private_dir, write_atomic

log = logging.getLogger(__name__)

CLIENT_ID_RE = re.compile(r"^C\.[0-9a-f]{16}$")
PUBLIC_KEY_BYTES = 32
PRIVATE_KEY_BYTES = 32

#: An Ed25519 private key in PKCS #8 is this DER prefix and the 32 bytes of the key (RFC 8410,
#: section 7), in a PEM block of one line: what cryptography's serialization writes too. The
#: writeback's key is read and written here; only a PEM in another form goes to cryptography's
#: parser (:func:`load_private_key`).
PKCS8_ED25519_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
PEM_BEGIN = "-----BEGIN PRIVATE KEY-----"
PEM_END = "-----END PRIVATE KEY-----"

WRITEBACK_HEADER = """\
# Peregrine agent writeback: this agent's identity (private key and client id) and state.
# Keep it owner-only. Deleting it makes this endpoint enroll as a new client.
"""


class IdentityError(Exception):
    """The writeback cannot be used; the message says what is wrong and what to do."""


def client_id_for(public_key_bytes: bytes) -> str:
    """The client id of a raw 32-byte Ed25519 public key."""
    if len(public_key_bytes) != PUBLIC_KEY_BYTES:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(public_key_bytes)}")
    return "C." + hashlib.sha256(public_key_bytes).hexdigest()[:16]


def is_client_id(value: str) -> bool:
    """Whether ``value`` looks like a client id (``C.`` + 16 lower-case hex digits)."""
    return bool(CLIENT_ID_RE.match(value))


def verify(public_key_bytes: bytes, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is the key's signature of ``data``; False for any malformed input."""
    try:
        VerifyKey(public_key_bytes).verify(data, signature)
    except (CryptoError, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class Identity:
    """An agent's key pair and client id."""

    signing_key: SigningKey = field(repr=False)
    public_key_bytes: bytes
    client_id: str

    @classmethod
    def from_signing_key(cls, key: SigningKey) -> Identity:
        raw = bytes(key.verify_key)
        return cls(key, raw, client_id_for(raw))

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> Identity:
        """The identity of a raw 32-byte Ed25519 private key; ValueError if it is not one."""
        if len(raw) != PRIVATE_KEY_BYTES:
            raise ValueError(f"an Ed25519 private key is 32 bytes, got {len(raw)}")
        return cls.from_signing_key(SigningKey(raw))

    @classmethod
    def generate(cls) -> Identity:
        return cls.from_signing_key(SigningKey.generate())

    @property
    def private_key_bytes(self) -> bytes:
        """The raw 32-byte private key (RFC 8032's seed)."""
        return bytes(self.signing_key)

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` (the server's challenge) with the agent's key."""
        return self.signing_key.sign(data).signature

    def private_key_pem(self) -> str:
        """The private key as PKCS #8 PEM (unencrypted: the writeback is owner-only)."""
        der = PKCS8_ED25519_PREFIX + self.private_key_bytes
        return f"{PEM_BEGIN}\n{base64.b64encode(der).decode()}\n{PEM_END}\n"


def load_private_key(pem: str) -> bytes:
    """The raw 32-byte private key of a PKCS #8 PEM block. One that is not an unencrypted
    Ed25519 key in the form :meth:`Identity.private_key_pem` writes goes through cryptography's
    full parser (imported only then), which raises ValueError or TypeError for what it cannot
    read."""
    lines = pem.strip().splitlines()
    if len(lines) == 3 and lines[0] == PEM_BEGIN and lines[2] == PEM_END:
        try:
            der = base64.b64decode(lines[1], validate=True)
        except binascii.Error:
            der = b""
        if len(der) == len(PKCS8_ED25519_PREFIX) + 32 and der.startswith(PKCS8_ED25519_PREFIX):
            return der[len(PKCS8_ED25519_PREFIX) :]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"it holds a key of type {type(key).__name__}, not Ed25519")
    return key.private_bytes_raw()


class _Dumper(yaml.SafeDumper):
    """The private key as a literal block, readable like a PEM file."""


def _literal(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _literal)


def _render(data: dict[str, Any]) -> str:
    return WRITEBACK_HEADER + yaml.dump(data, Dumper=_Dumper, sort_keys=False)


def _new_writeback(identity: Identity) -> dict[str, Any]:
    return {
        "client_id": identity.client_id,
        "private_key": identity.private_key_pem(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _corrupt(path: Path, problem: str) -> IdentityError:
    return IdentityError(
        f"{path}: the agent's writeback is unusable ({problem}). It holds this endpoint's "
        "identity: restore it from a backup if you can; otherwise move it away and the agent "
        "will enroll as a new client on its next start."
    )


def read_writeback(path: Path) -> dict[str, Any]:
    """The writeback's contents as a mapping (identity and any state the agent keeps there)."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise _corrupt(path, f"not text: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _corrupt(path, f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise _corrupt(path, "expected a mapping with client_id and private_key")
    return data


def _identity_from(path: Path, data: dict[str, Any]) -> Identity:
    pem = data.get("private_key")
    if not isinstance(pem, str):
        raise _corrupt(path, "private_key is missing")
    try:
        identity = Identity.from_private_bytes(load_private_key(pem))
    except (ValueError, TypeError) as exc:
        raise _corrupt(path, f"private_key cannot be read: {exc}") from None
    stored = data.get("client_id")
    if stored is not None and stored != identity.client_id:
        raise _corrupt(
            path, f"client_id {stored!r} does not match the key (which is {identity.client_id})"
        )
    return identity


def _tighten(path: Path) -> None:
    st = path.stat()
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        log.warning(
            "%s was readable by others (mode %o): made owner-only", path, st.st_mode & 0o777
        )
        path.chmod(SECRET_MODE)


def load_or_create(writeback: Path) -> Identity:
    """The agent's identity: read from ``writeback``, or made and saved there on first start.

    Creation is atomic and exclusive (two agents starting at once end with one identity).
    Raises IdentityError when the file exists but cannot be used.
    """
    if not writeback.exists():
        ensure_private_dir(writeback.parent)
        identity = Identity.generate()
        if create_exclusive(writeback, _render(_new_writeback(identity)), SECRET_MODE):
            log.info("new agent identity %s in %s", identity.client_id, writeback)
            return identity
        # Another process created it first: use theirs.
    try:
        _tighten(writeback)
        return _identity_from(writeback, read_writeback(writeback))
    except OSError as exc:
        raise IdentityError(f"{writeback}: cannot read the agent's writeback: {exc}") from None


def update_writeback(writeback: Path, **values: Any) -> None:
    """Store agent state next to the identity (atomic rewrite); the identity keys are kept."""
    data = read_writeback(writeback)
    for reserved in ("client_id", "private_key"):
        if reserved in values:
            raise ValueError(f"{reserved} belongs to the identity and cannot be updated")
    data.update(values)
    write_atomic(writeback, _render(data), SECRET_MODE)


def reidentify(writeback: Path) -> Identity:
    """Make a new identity (the server found another live agent with this one: a clone).

    The old writeback is kept as ``<name>.old-<UTC time>`` for forensics: it shows which
    identity the machine was cloned with.
    """
    if writeback.exists():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        target = writeback.with_name(f"{writeback.name}.old-{stamp}")
        n = 1
        while target.exists():
            target = writeback.with_name(f"{writeback.name}.old-{stamp}-{n}")
            n += 1
        writeback.rename(target)
        log.warning("identity replaced; the old writeback is kept as %s", target)
    return load_or_create(writeback)
