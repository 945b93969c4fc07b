"""Passwords: real argon2id hashes, verification, rehash detection and the strength floor."""

from __future__ import annotations

import time

import pytest
from argon2 import PasswordHasher

from peregrine.auth import passwords


def test_hash_verifies_and_wrong_password_does_not() -> None:
    stored = passwords.hash_password("a long passphrase")
    assert stored.startswith("$argon2id$")
    assert passwords.verify_password(stored, "a long passphrase")
    assert not passwords.verify_password(stored, "a long passphrasE")
    assert not passwords.verify_password("not a hash", "a long passphrase")
    assert not passwords.verify_password(stored, "x" * (passwords.MAX_PASSWORD_LENGTH + 1))
    assert passwords.hash_password("a long passphrase") != stored  # salted


def test_needs_rehash_for_weaker_parameters() -> None:
    assert not passwords.needs_rehash(passwords.hash_password("a long passphrase"))
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("a long passphrase")
    assert passwords.needs_rehash(weak)
    assert passwords.needs_rehash("garbage")


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("elevenchars", "at least 12"),
        ("abababababababab", "more than three different"),
        ("my name is Alice ok", "user name"),
        ("x" * 1025 + "abcd", "at most"),
    ],
)
def test_weak_passwords_are_refused(password: str, message: str) -> None:
    with pytest.raises(passwords.WeakPassword, match=message):
        passwords.check_password_strength(password, "alice")


def test_twelve_varied_characters_are_enough() -> None:
    passwords.check_password_strength("Tr0ub4dor&3x", "alice")


def test_wasted_verification_costs_about_a_real_one() -> None:
    stored = passwords.hash_password("a long passphrase")
    passwords.waste_verification("warm-up")

    def best_of_three(run: object) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            run()  # type: ignore[operator]
            times.append(time.perf_counter() - start)
        return min(times)

    real = best_of_three(lambda: passwords.verify_password(stored, "wrong passphrase"))
    wasted = best_of_three(lambda: passwords.waste_verification("wrong passphrase"))
    assert 0.4 < wasted / real < 2.5
