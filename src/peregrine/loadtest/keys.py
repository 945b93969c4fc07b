"""The simulated fleet's identities: many Ed25519 keys in one owner-only file.

A simulated client is its index in the fleet; its key is entry ``index`` of ``keys.msgpack`` in
the key directory (raw 32-byte private keys, msgpack list). Keeping them means a restarted
simulator comes back as the same clients, which the server already knows: no new enrollment,
no interrogation, no orphaned client records. Writes are atomic and serialized with a lock file,
so several simulator processes sharing the directory never lose each other's updates.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec

from peregrine.agent.identity import PRIVATE_KEY_BYTES, Identity
from peregrine.config.files import SECRET_MODE, ensure_private_dir, write_atomic

KEY_FILE = "keys.msgpack"
LOCK_FILE = "keys.lock"
RAW_KEY_BYTES = PRIVATE_KEY_BYTES


class KeyStoreError(Exception):
    """The key file cannot be used; the message says what to do."""


def new_raw_key() -> bytes:
    """An Ed25519 private key: 32 bytes from the system's CSPRNG (RFC 8032, section 5.1.5)."""
    return os.urandom(RAW_KEY_BYTES)


def identity_from_raw(raw: bytes) -> Identity:
    return Identity.from_private_bytes(raw)


class KeyStore:
    """The raw private keys of simulated clients ``0 .. n-1``, cached in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / KEY_FILE
        self.generated = 0  # keys this store made (0 when everything came from the cache)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        ensure_private_dir(self.directory)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, SECRET_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _read(self) -> list[bytes]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            keys = msgspec.msgpack.decode(data, type=list[bytes])
        except msgspec.DecodeError as exc:
            raise KeyStoreError(
                f"{self.path}: not a simulator key file ({exc}); move it away to start afresh "
                "(the simulated clients then enroll as new clients)"
            ) from None
        bad = [i for i, k in enumerate(keys) if len(k) != RAW_KEY_BYTES]
        if bad:
            raise KeyStoreError(f"{self.path}: entry {bad[0]} is not a 32-byte Ed25519 key")
        return keys

    def load(self, count: int) -> list[bytes]:
        """The first ``count`` keys, generating and saving any the cache does not hold yet."""
        with self._locked():
            keys = self._read()
            missing = count - len(keys)
            if missing > 0:
                keys.extend(new_raw_key() for _ in range(missing))
                self.generated += missing
                write_atomic(self.path, msgspec.msgpack.encode(keys), SECRET_MODE)
        return keys[:count]

    def replace(self, index: int, raw: bytes) -> None:
        """Store a new key for client ``index`` (it was told to re-identify)."""
        with self._locked():
            keys = self._read()
            if index >= len(keys):
                keys.extend(new_raw_key() for _ in range(index + 1 - len(keys)))
            keys[index] = raw
            write_atomic(self.path, msgspec.msgpack.encode(keys), SECRET_MODE)
