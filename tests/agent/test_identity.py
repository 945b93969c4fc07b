"""The agent identity: a real Ed25519 key in a real writeback file."""

from __future__ import annotations

import hashlib
import re
import stat
import threading
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peregrine.agent.identity import (
    Identity,
    IdentityError,
    client_id_for,
    is_client_id,
    load_or_create,
    load_private_key,
    reidentify,
    update_writeback,
    verify,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_creates_an_owner_only_writeback(tmp_path: Path) -> None:
    wb = tmp_path / "state" / "writeback.yaml"
    identity = load_or_create(wb)
    assert mode(wb) == 0o600
    assert mode(wb.parent) == 0o700
    data = yaml.safe_load(wb.read_text())
    assert data["client_id"] == identity.client_id
    assert "BEGIN PRIVATE KEY" in data["private_key"]
    assert [p.name for p in wb.parent.iterdir()] == ["writeback.yaml"]  # no temp file left


def test_reload_gives_the_same_identity(tmp_path: Path) -> None:
    wb = tmp_path / "wb.yaml"
    first = load_or_create(wb)
    second = load_or_create(wb)
    assert second.client_id == first.client_id
    assert second.public_key_bytes == first.public_key_bytes


def test_client_id_is_c_dot_16_hex_of_sha256_of_the_public_key(tmp_path: Path) -> None:
    identity = load_or_create(tmp_path / "wb.yaml")
    assert re.fullmatch(r"C\.[0-9a-f]{16}", identity.client_id)
    assert len(identity.public_key_bytes) == 32
    expected = "C." + hashlib.sha256(identity.public_key_bytes).hexdigest()[:16]
    assert identity.client_id == expected == client_id_for(identity.public_key_bytes)
    assert is_client_id(identity.client_id)
    assert not is_client_id("C.XYZ")


def test_client_id_for_known_key() -> None:
    key = bytes(range(32))
    assert client_id_for(key) == "C." + hashlib.sha256(key).hexdigest()[:16]
    with pytest.raises(ValueError, match="32 bytes"):
        client_id_for(b"short")


def test_sign_and_verify(tmp_path: Path) -> None:
    identity = load_or_create(tmp_path / "wb.yaml")
    nonce = b"challenge-nonce" + identity.client_id.encode()
    signature = identity.sign(nonce)
    assert verify(identity.public_key_bytes, signature, nonce)


def test_tampered_signature_or_data_fails(tmp_path: Path) -> None:
    identity = load_or_create(tmp_path / "wb.yaml")
    signature = identity.sign(b"nonce")
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    assert not verify(identity.public_key_bytes, tampered, b"nonce")
    assert not verify(identity.public_key_bytes, signature, b"nonce2")
    other = Identity.generate()
    assert not verify(other.public_key_bytes, signature, b"nonce")
    assert not verify(b"not a key", signature, b"nonce")
    assert not verify(identity.public_key_bytes, b"short", b"nonce")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("client_id: [unclosed\n", "not valid YAML"),
        ("- a list\n", "expected a mapping"),
        ("client_id: C.0000000000000000\n", "private_key is missing"),
        ("private_key: 'not a pem'\n", "private_key cannot be read"),
    ],
)
def test_corrupt_writeback_is_a_clear_error_and_left_alone(
    tmp_path: Path, content: str, problem: str
) -> None:
    wb = tmp_path / "wb.yaml"
    wb.write_text(content)
    with pytest.raises(IdentityError) as info:
        load_or_create(wb)
    message = str(info.value)
    assert str(wb) in message
    assert problem in message
    assert "move it away" in message  # says what to do
    assert wb.read_text() == content  # never silently replaced


def pkcs8_pem(key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> str:
    """What cryptography's own serialization writes for ``key``."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


#: RFC 8032, section 7.1, tests 1 to 3: private key, public key, message, signature.
RFC8032_VECTORS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9"
        "b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f1"
        "1d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984d"
        "c6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


@pytest.mark.parametrize(("private", "public", "message", "signature"), RFC8032_VECTORS)
def test_the_rfc_8032_test_vectors(private: str, public: str, message: str, signature: str) -> None:
    identity = Identity.from_private_bytes(bytes.fromhex(private))
    assert identity.public_key_bytes == bytes.fromhex(public)
    assert identity.sign(bytes.fromhex(message)) == bytes.fromhex(signature)
    assert verify(identity.public_key_bytes, bytes.fromhex(signature), bytes.fromhex(message))


@pytest.mark.parametrize("message", [b"", b"challenge", bytes(range(256)) * 40])
def test_keys_sign_and_verify_as_with_cryptography(message: bytes) -> None:
    """Ed25519 is deterministic: for the same private key, cryptography (which agents used
    before PyNaCl) gives the same public key, so the same client id, and the same signatures;
    each accepts the other's."""
    for _ in range(20):
        identity = Identity.generate()
        theirs = Ed25519PrivateKey.from_private_bytes(identity.private_key_bytes)
        assert theirs.public_key().public_bytes_raw() == identity.public_key_bytes
        signature = identity.sign(message)
        assert signature == theirs.sign(message)
        theirs.public_key().verify(signature, message)  # raises if it does not hold
        assert verify(identity.public_key_bytes, theirs.sign(message), message)


def test_the_key_is_written_as_cryptography_writes_pkcs8_and_read_back() -> None:
    """The writeback's PEM is byte for byte what cryptography's serialization writes, and each
    reads the other's: the same key, the same signatures."""
    identity = Identity.generate()
    theirs = Ed25519PrivateKey.from_private_bytes(identity.private_key_bytes)
    pem = identity.private_key_pem()
    assert pem == pkcs8_pem(theirs)
    read_by_cryptography = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(read_by_cryptography, Ed25519PrivateKey)
    assert read_by_cryptography.sign(b"challenge") == identity.sign(b"challenge")
    read_here = Identity.from_private_bytes(load_private_key(pem))
    assert read_here.client_id == identity.client_id
    assert read_here.sign(b"challenge") == identity.sign(b"challenge")
    # and a key cryptography wrote is read here as the same identity
    made_there = Ed25519PrivateKey.generate()
    identity = Identity.from_private_bytes(load_private_key(pkcs8_pem(made_there)))
    assert identity.public_key_bytes == made_there.public_key().public_bytes_raw()
    assert identity.sign(b"challenge") == made_there.sign(b"challenge")


def test_a_private_key_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes, got 31"):
        Identity.from_private_bytes(bytes(31))


def test_a_pem_in_another_layout_is_read_by_the_full_parser() -> None:
    """A PEM with CRLF line ends still loads (through cryptography's parser); an encrypted key,
    another kind of key and a malformed one are refused with the reason."""
    identity = Identity.generate()
    crlf = identity.private_key_pem().replace("\n", "\r\n")
    assert load_private_key(crlf) == identity.private_key_bytes
    theirs = Ed25519PrivateKey.from_private_bytes(identity.private_key_bytes)
    encrypted = theirs.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    ).decode()
    with pytest.raises(TypeError, match="encrypted"):
        load_private_key(encrypted)
    with pytest.raises(TypeError, match="ECPrivateKey, not Ed25519"):
        load_private_key(pkcs8_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(ValueError):
        load_private_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


def test_a_writeback_holding_another_kind_of_key(tmp_path: Path) -> None:
    wb = tmp_path / "wb.yaml"
    wb.write_text(
        yaml.safe_dump({"private_key": pkcs8_pem(ec.generate_private_key(ec.SECP256R1()))})
    )
    with pytest.raises(IdentityError, match="not Ed25519"):
        load_or_create(wb)


def test_writeback_whose_id_does_not_match_its_key(tmp_path: Path) -> None:
    wb = tmp_path / "wb.yaml"
    load_or_create(wb)
    data = yaml.safe_load(wb.read_text())
    data["client_id"] = "C.0123456789abcdef"
    wb.write_text(yaml.safe_dump(data))
    with pytest.raises(IdentityError, match="does not match the key"):
        load_or_create(wb)


def test_binary_garbage_writeback(tmp_path: Path) -> None:
    wb = tmp_path / "wb.yaml"
    wb.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(IdentityError, match="unusable"):
        load_or_create(wb)


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    wb = tmp_path / "wb.yaml"
    first = load_or_create(wb)
    wb.chmod(0o644)
    assert load_or_create(wb).client_id == first.client_id
    assert mode(wb) == 0o600


def test_reidentify_gives_a_new_id_and_keeps_the_old_file(tmp_path: Path) -> None:
    wb = tmp_path / "wb.yaml"
    old = load_or_create(wb)
    old_text = wb.read_text()
    new = reidentify(wb)
    assert new.client_id != old.client_id
    assert load_or_create(wb).client_id == new.client_id
    (kept,) = tmp_path.glob("wb.yaml.old-*")
    assert kept.read_text() == old_text
    assert re.fullmatch(r"wb\.yaml\.old-\d{8}T\d{6}Z", kept.name)
    # twice in the same second: both old files survive
    newer = reidentify(wb)
    assert newer.client_id not in (old.client_id, new.client_id)
    assert len(list(tmp_path.glob("wb.yaml.old-*"))) == 2


def test_update_writeback_keeps_the_identity(tmp_path: Path) -> None:
    wb = tmp_path / "wb.yaml"
    identity = load_or_create(wb)
    update_writeback(wb, enrolled=True, seen_hunts=["H.1"])
    assert load_or_create(wb).client_id == identity.client_id
    assert yaml.safe_load(wb.read_text())["seen_hunts"] == ["H.1"]
    assert mode(wb) == 0o600
    with pytest.raises(ValueError, match="identity"):
        update_writeback(wb, client_id="C.0000000000000000")


def test_identity_repr_does_not_show_the_key(tmp_path: Path) -> None:
    identity = load_or_create(tmp_path / "wb.yaml")
    shown = repr(identity)
    assert "private_key" not in shown
    assert "signing_key" not in shown
    assert identity.private_key_bytes.hex() not in shown
    assert identity.client_id in shown  # it does say which identity it is


def test_simultaneous_first_starts_agree_on_one_identity(tmp_path: Path) -> None:
    wb = tmp_path / "wb.yaml"
    barrier = threading.Barrier(8)
    ids: list[str] = []

    def start() -> None:
        barrier.wait()
        ids.append(load_or_create(wb).client_id)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ids) == 8
    assert set(ids) == {load_or_create(wb).client_id}
