"""Pure logic of live results: positions, message shapes, the per-connection queue."""

from __future__ import annotations

import orjson
import pytest

from gateway.live.bus import MemoryJournal
from gateway.live.events import LiveEvent, format_pos, parse_pos, result_params, sse_frame
from gateway.live.stream import SLOW, LiveStream


def event(seq: int, local: int = 0, session: str = "s1", client: str = "c1") -> LiveEvent:
    return LiveEvent((seq, local), client, session, "playbook/progress", orjson.dumps({"n": seq}))


@pytest.mark.parametrize(("text", "pos"), [("0", (0, 0)), ("17", (17, 0)), ("17.3", (17, 3))])
def test_positions_round_trip(text: str, pos: tuple[int, int]) -> None:
    assert parse_pos(text) == pos and format_pos(pos) == text


@pytest.mark.parametrize("text", [None, "", "abc", "1.2.3", "-1", "1e5", "9" * 30])
def test_foreign_last_event_ids_are_ignored(text: str | None) -> None:
    assert parse_pos(text) is None


def test_local_events_sort_between_stream_events() -> None:
    assert (10, 0) < (10, 1) < (10, 2) < (11, 0)


def test_frame_is_one_sse_event() -> None:
    assert sse_frame("5.1", "ping", b'{"a":1}') == b'id: 5.1\nevent: ping\ndata: {"a":1}\n\n'


def test_result_params_failure_defaults() -> None:
    assert result_params("r", "e", "failed", None, None)["error"] == {
        "code": -32000,
        "message": "Playbook execution failed",
        "data": None,
    }
    assert result_params("r", None, "COMPLETED", [1], None) == {
        "requestId": "r",
        "executionId": None,
        "status": "COMPLETED",
        "data": [1],
    }


@pytest.mark.gen_test
async def test_replay_and_live_overlap_delivers_each_event_once_in_order() -> None:
    stream = LiveStream("c1", "s1", limit=10, start=(2, 0))
    stream.offer(event(4))  # live, during replay: held
    stream.offer(event(5))
    sent = [e.pos for e in (event(3), event(4)) if stream.replayed(e)]  # the replay read 3 and 4
    stream.go_live()
    stream.offer(event(5))  # a second delivery path (consumer restart)
    stream.offer(event(6))
    while (item := stream.take()) is not None:
        sent.append(item.pos)
    assert sent == [(3, 0), (4, 0), (5, 0), (6, 0)]


@pytest.mark.gen_test
async def test_other_sessions_events_are_dropped() -> None:
    stream = LiveStream("c1", "s1", limit=10)
    stream.go_live()
    stream.offer(event(1, session="intruder"))
    assert stream.take() is None


@pytest.mark.gen_test
async def test_queue_is_bounded_and_overflow_ends_the_stream() -> None:
    stream = LiveStream("c1", "s1", limit=3)
    stream.go_live()
    for seq in range(1, 5):
        stream.offer(event(seq))
        assert len(stream.queue) <= 3
    assert stream.reason == SLOW and stream.dropped == 4 and not stream.queue
    stream.offer(event(9))
    assert not stream.queue  # nothing accepted after the end
    stream.close()


@pytest.mark.gen_test
async def test_held_events_are_bounded_too() -> None:
    stream = LiveStream("c1", "s1", limit=2)
    for seq in range(1, 4):
        stream.offer(event(seq))
    assert stream.reason == SLOW and stream.held == []
    stream.close()


def test_memory_journal_bounds_and_order() -> None:
    journal = MemoryJournal(retention_secs=60, per_client=3, max_clients=2)
    for seq in range(1, 6):
        journal.add(event(seq))
    assert [e.pos[0] for e in journal.after("c1", (0, 0))] == [3, 4, 5]
    assert [e.pos[0] for e in journal.after("c1", (4, 0))] == [5]
    journal.add(event(1, client="c2"))
    journal.add(event(1, client="c3"))  # over max_clients: the least recently used client goes
    assert journal.after("c1", (0, 0)) == [] and len(journal) == 2
