"""The callback token's fast check accepts exactly what ``jwt.decode`` accepts, with the same answers."""

from __future__ import annotations

import random
import time

import jwt
import pytest

from gateway.auth.tokens import CallbackSigner, CallbackTokenError

SECRET = "test-callback-secret-0123456789abcdefghijkl"
RID = "0123456789abcdef0123456789abcdef"


def reference_outcome(token: str, request_id: str) -> tuple[int, str] | None:
    """What the check answered before the fast path: jwt.decode alone."""
    try:
        claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"require": ["exp", "rid"]})
    except jwt.ExpiredSignatureError:
        return (401, "Callback token expired")
    except jwt.InvalidTokenError:
        return (401, "Invalid callback token")
    if claims.get("rid") != request_id:
        return (403, "Callback token does not match request_id")
    return None


def outcome(signer: CallbackSigner, token: str, request_id: str) -> tuple[int, str] | None:
    try:
        signer.verify(token, request_id)
    except CallbackTokenError as exc:
        return (exc.status, exc.public)
    return None


def test_issued_tokens_and_the_usual_refusals() -> None:
    signer = CallbackSigner(SECRET, 3600)
    token = signer.issue(RID)
    assert signer._own_unexpired_claims(token) is not None  # the fast path is the one taken
    assert outcome(signer, token, RID) is None
    assert outcome(signer, token, "f" * 32) == (403, "Callback token does not match request_id")
    assert outcome(signer, signer.issue(RID, ttl_secs=-5), RID) == (401, "Callback token expired")
    assert outcome(signer, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), RID) == (
        401,
        "Invalid callback token",
    )
    assert outcome(CallbackSigner("another-secret-0123456789abcdefghijklmnop", 60), token, RID) == (
        401,
        "Invalid callback token",
    )
    assert outcome(signer, token + "é", RID) == (401, "Invalid callback token")


def test_tokens_the_fast_path_leaves_to_jwt() -> None:
    signer = CallbackSigner(SECRET, 3600)
    future = int(time.time()) + 600
    not_yet = jwt.encode({"rid": RID, "exp": future + 600, "nbf": future}, SECRET, algorithm="HS256")
    no_exp = jwt.encode({"rid": RID}, SECRET, algorithm="HS256")
    float_exp = jwt.encode({"rid": RID, "exp": future + 0.5}, SECRET, algorithm="HS256")
    about_to_expire = signer.issue(RID, ttl_secs=0.9)
    for token in (not_yet, no_exp, float_exp, about_to_expire):
        assert signer._own_unexpired_claims(token) is None
        assert outcome(signer, token, RID) == reference_outcome(token, RID)
    assert outcome(signer, not_yet, RID) == (401, "Invalid callback token")


@pytest.mark.parametrize("seed", range(3))
def test_mutated_tokens_get_the_answers_jwt_gives(seed: int) -> None:
    """Random edits of a valid token: the fast path never accepts one jwt.decode refuses."""
    signer = CallbackSigner(SECRET, 3600)
    rng = random.Random(seed)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="
    for _ in range(700):
        token = signer.issue(RID if rng.random() < 0.8 else "e" * 32)
        chars = list(token)
        for _ in range(rng.randint(0, 3)):
            position = rng.randrange(len(chars))
            action = rng.random()
            if action < 0.5:
                chars[position] = rng.choice(alphabet)
            elif action < 0.75:
                del chars[position]
            else:
                chars.insert(position, rng.choice(alphabet))
        mutated = "".join(chars)
        assert outcome(signer, mutated, RID) == reference_outcome(mutated, RID), mutated
