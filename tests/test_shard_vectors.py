"""Shard routing's arithmetic against the reference (noetl/gateway ``src/sharding.rs``, NoETL server's twin).

The reference hashes an execution id as the 8 little-endian bytes of an i64 with twox-hash's
XxHash64, seed 0. Its tests pin properties (one shard → 0, stable, in range for negative ids,
±20 % spread over 10 000 sequential snowflakes) and the path/body extraction cases; they are
all here. The numbers themselves are pinned too: the reference's drift-guard battery (every
id × shard count it compares between gateway and server), computed by an XXH64 written from
the algorithm's specification below, so a wrong library, seed or byte order fails.
"""

from __future__ import annotations

import random

import pytest
import xxhash

from gateway.noetl.shards import (
    ShardRouter,
    carries_id_in_body,
    execution_id_in_body,
    execution_id_in_path,
    execution_id_in_raw_body,
    parse_execution_id,
    shard_for,
)

I64_MAX, I64_MIN = (1 << 63) - 1, -(1 << 63)
SNOWFLAKE = 320_816_801_799_737_344  # the reference's canonical id

# -- XXH64 from its specification (xxhash's doc/xxhash_spec.md), independent of the library ------

_P1, _P2, _P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
_P4, _P5, _MASK = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5, (1 << 64) - 1


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & _MASK


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * _P2) & _MASK, 31) * _P1) & _MASK


def spec_xxh64(data: bytes, seed: int = 0) -> int:
    """XXH64 as the specification writes it (slow, obviously correct)."""
    n, pos = len(data), 0
    if n >= 32:
        acc_lanes = [(seed + _P1 + _P2) & _MASK, (seed + _P2) & _MASK, seed, (seed - _P1) & _MASK]
        while pos + 32 <= n:
            for i in range(4):
                lane = int.from_bytes(data[pos + 8 * i : pos + 8 * i + 8], "little")
                acc_lanes[i] = _round(acc_lanes[i], lane)
            pos += 32
        acc = sum(_rotl(lane, bits) for lane, bits in zip(acc_lanes, (1, 7, 12, 18), strict=True)) & _MASK
        for lane in acc_lanes:
            acc = ((acc ^ _round(0, lane)) * _P1 + _P4) & _MASK
    else:
        acc = (seed + _P5) & _MASK
    acc = (acc + n) & _MASK
    while pos + 8 <= n:
        acc = (_rotl(acc ^ _round(0, int.from_bytes(data[pos : pos + 8], "little")), 27) * _P1 + _P4) & _MASK
        pos += 8
    if pos + 4 <= n:
        acc = (_rotl(acc ^ (int.from_bytes(data[pos : pos + 4], "little") * _P1 & _MASK), 23) * _P2 + _P3) & _MASK
        pos += 4
    for byte in data[pos:]:
        acc = (_rotl(acc ^ (byte * _P5 & _MASK), 11) * _P1) & _MASK
    acc = ((acc ^ (acc >> 33)) * _P2) & _MASK
    acc = ((acc ^ (acc >> 29)) * _P3) & _MASK
    return acc ^ (acc >> 32)


def spec_shard(execution_id: int, shard_count: int) -> int:
    return 0 if shard_count <= 1 else spec_xxh64(execution_id.to_bytes(8, "little", signed=True)) % shard_count


def test_the_library_is_standard_xxh64() -> None:
    assert spec_xxh64(b"") == 0xEF46DB3751D8E999  # the specification's own check value
    rng = random.Random(16)
    for size in [*range(0, 70), 1000]:
        data = rng.randbytes(size)
        for seed in (0, 1, _P1):
            assert xxhash.xxh64_intdigest(data, seed=seed) == spec_xxh64(data, seed), (size, seed)


# -- pinned (execution_id, shard_count) -> shard: the reference's drift-guard battery -----------

DRIFT_GUARD_IDS = (1, 42, 9_999_999_999, SNOWFLAKE, I64_MAX, -1)
DRIFT_GUARD_COUNTS = (2, 4, 16, 64, 1024)
PINNED = {
    1: (1, 1, 5, 21, 405),
    42: (1, 3, 3, 19, 851),
    9_999_999_999: (1, 3, 7, 55, 823),
    SNOWFLAKE: (0, 2, 14, 62, 702),
    I64_MAX: (0, 0, 12, 12, 780),
    -1: (1, 1, 9, 9, 713),
}


@pytest.mark.parametrize("execution_id", DRIFT_GUARD_IDS)
def test_pinned_shards(execution_id: int) -> None:
    expected = PINNED[execution_id]
    assert tuple(spec_shard(execution_id, n) for n in DRIFT_GUARD_COUNTS) == expected  # the table is right
    assert tuple(shard_for(execution_id, n) for n in DRIFT_GUARD_COUNTS) == expected  # and so is the gateway


def test_byte_order_and_encoding_matter() -> None:
    """Big-endian bytes or the decimal text would give other shards: the table above would catch it."""
    differs = 0
    for execution_id in DRIFT_GUARD_IDS:
        big = xxhash.xxh64_intdigest(execution_id.to_bytes(8, "big", signed=True)) % 1024
        text = xxhash.xxh64_intdigest(str(execution_id).encode()) % 1024
        differs += big != shard_for(execution_id, 1024) and text != shard_for(execution_id, 1024)
    assert differs >= 5


# -- the reference's property tests -----------------------------------------------------------


def test_one_shard_and_zero_shards_return_zero() -> None:
    for execution_id in (0, 1, I64_MAX, -1, I64_MIN):
        assert shard_for(execution_id, 1) == 0
    assert shard_for(42, 0) == 0


def test_negative_ids_stay_in_range() -> None:
    for execution_id in (-1, I64_MIN, I64_MIN + 1, -42):
        for n in (1, 4, 16, 1024):
            assert 0 <= shard_for(execution_id, n) < n


def test_stable_across_calls() -> None:
    for execution_id, n in ((1, 16), (SNOWFLAKE, 16), (I64_MAX, 16)):
        assert len({shard_for(execution_id, n) for _ in range(100)}) == 1


def test_sequential_snowflakes_spread_within_20_percent_over_16_shards() -> None:
    counts = [0] * 16
    for i in range(10_000):
        counts[shard_for(SNOWFLAKE + i, 16)] += 1
    mean = 10_000 // 16
    assert all(mean - mean // 5 <= count <= mean + mean // 5 for count in counts), counts


def test_router_routes_like_shard_for() -> None:
    router = ShardRouter("http://default:8082", [(i, f"http://noetl-server-{i}:8082") for i in range(4)])
    for execution_id in (1, 42, SNOWFLAKE, -1, I64_MAX):
        route = router.for_execution(execution_id)
        assert route.base_url == f"http://noetl-server-{shard_for(execution_id, 4)}:8082"
        assert route.shard_index == shard_for(execution_id, 4)
    assert router.for_execution(None).base_url == "http://default:8082"
    unsharded = ShardRouter("http://default:8082")
    assert not unsharded.sharded and unsharded.for_call("executions/12345").base_url == "http://default:8082"
    with pytest.raises(ValueError, match=r"0\.\.n-1"):
        ShardRouter("http://d", [(0, "http://a"), (2, "http://b")])


# -- where the execution id is read from (the reference's extraction cases) ---------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("executions/12345", 12345),
        ("executions/12345/status", 12345),
        ("executions/12345/cancel", 12345),
        ("executions/12345/events/stream", 12345),
        ("vars/9999", 9999),
        ("vars/9999/extra", 9999),
        ("executions/-1", -1),
        ("execute", None),
        ("catalog/list", None),
        ("events", None),
        ("events/batch", None),
        ("commands/12345", None),
        ("executions/abc", None),
        ("executions/run", None),
        ("", None),
        ("executions", None),
        ("executions/99999999999999999999999", None),
        ("executions/9223372036854775808", None),  # one past i64::MAX
        ("executions/ 12", None),
        ("executions/1_000", None),
    ],
)
def test_execution_id_in_path(path: str, expected: int | None) -> None:
    assert execution_id_in_path(path) == expected


def test_only_event_posts_carry_the_id_in_the_body() -> None:
    assert carries_id_in_body("events") and carries_id_in_body("events/batch")
    for path in ("executions/123", "executions/123/status", "vars/9999", "execute", "catalog/list", "credentials"):
        assert not carries_id_in_body(path)
    for path in ("", "events/", "events/batch/extra"):
        assert not carries_id_in_body(path)
    router = ShardRouter("http://d", [(0, "http://a"), (1, "http://b")])
    assert router.needs_body("POST", "events") and not router.needs_body("GET", "events")
    assert not ShardRouter("http://d").needs_body("POST", "events")  # unsharded: bodies stream as before


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"execution_id": "320816801799737344", "step": "start", "payload": {}}', SNOWFLAKE),
        (b'{"execution_id": 12345, "step": "x"}', 12345),
        (b'{"execution_id": "-42"}', -42),
        (b'{"execution_id": "9999999999", "worker_id": "w-1", "events": [{"step": "a"}]}', 9_999_999_999),
        (b'{"step": "no_eid_here"}', None),
        (b'{"execution_id": "not-a-number"}', None),
        (b"{this is not valid json", None),
        (b"", None),
        (b'[{"execution_id": "123"}]', None),
        (b'{"step": "x", "payload": {"execution_id": "99999"}}', None),  # nested ids route nothing
        (b'{"execution_id": true}', None),
        (b'{"execution_id": 1.5}', None),
    ],
)
def test_execution_id_in_body(raw: bytes, expected: int | None) -> None:
    assert execution_id_in_raw_body(raw) == expected


def test_body_ids_route_the_decoded_and_the_raw_body_alike() -> None:
    router = ShardRouter("http://d", [(0, "http://a"), (1, "http://b")])
    owner = router.for_execution(SNOWFLAKE).base_url
    assert router.for_call("events", {"execution_id": str(SNOWFLAKE)}).base_url == owner
    assert router.for_call("events", f'{{"execution_id": {SNOWFLAKE}}}'.encode()).base_url == owner
    assert execution_id_in_body({"execution_id": str(I64_MAX + 1)}) is None
    assert parse_execution_id("+7") == 7 and parse_execution_id("7 ") is None
