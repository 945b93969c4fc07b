"""Token and session id format: parseable, random, and only comparable through their hash."""

from __future__ import annotations

from peregrine.auth import tokens


def test_new_token_round_trips_through_parse() -> None:
    token_id, secret, text = tokens.new_token()
    assert text == f"prg_{token_id}_{secret}"
    assert tokens.is_token_id(token_id)
    assert tokens.parse_token(text) == (token_id, secret)
    assert tokens.parse_token(f"  {text}\n") == (token_id, secret)
    assert len(secret) >= 43  # 32 random bytes


def test_parse_rejects_malformed_tokens() -> None:
    _, secret, _ = tokens.new_token()
    for bad in (
        "",
        "prg_",
        f"prg_XYZ_{secret}",
        f"prg_0123456789abcdeg_{secret}",
        "prg_0123456789abcdef_short",
        f"tok_0123456789abcdef_{secret}",
        f"prg_0123456789abcdef_{secret}!",
    ):
        assert tokens.parse_token(bad) is None, bad


def test_tokens_and_session_ids_are_unique() -> None:
    assert len({tokens.new_token()[2] for _ in range(200)}) == 200
    assert len({tokens.new_session_id() for _ in range(200)}) == 200
    assert tokens.new_csrf_token() != tokens.new_csrf_token()


def test_secret_matches_only_its_hash() -> None:
    stored = tokens.hash_secret("s3cret")
    assert len(stored) == 64 and "s3cret" not in stored
    assert tokens.secret_matches(stored, "s3cret")
    assert not tokens.secret_matches(stored, "s3creT")
    assert not tokens.secret_matches(None, "s3cret")
    assert not tokens.secret_matches("0" * 64, "s3cret")
