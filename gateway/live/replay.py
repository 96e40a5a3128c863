"""What a reconnecting client missed: the event stream (NATS) merged with this process's journal."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator

from gateway.live.bus import EventBus, MemoryJournal
from gateway.live.events import KIND_RESULT, KIND_STATE, LiveEvent
from gateway.live.streams import Opened
from gateway.nats.link import NatsLink

log = logging.getLogger("gateway.live")


async def replay(
    opened: Opened, journal: MemoryJournal, bus: EventBus, link: NatsLink
) -> AsyncGenerator[LiveEvent, None]:
    """Missed events, in order, each once: the stream's (NATS) merged with this process's own."""
    after = opened.replay_after
    if after is None:
        return
    local = journal.after(opened.client_id, after)
    index = 0
    results: set[tuple[str, str]] = set()  # one forwarded after an outage is in the journal and the stream
    if link.connected:
        try:
            async for event in bus.replay(opened.client_id, after[0]):
                while index < len(local) and local[index].pos < event.pos:
                    if _wanted(opened, local[index], results):
                        yield local[index]
                    index += 1
                if _wanted(opened, event, results):
                    yield event
        except Exception as exc:  # NATS went away mid-replay: what follows comes live
            log.warning("replay for client %s cut short: %s", opened.client_id[:8], type(exc).__name__)
    for event in local[index:]:
        if _wanted(opened, event, results):
            yield event


def _wanted(opened: Opened, event: LiveEvent, results: set[tuple[str, str]]) -> bool:
    if event.session != opened.stream.session:
        return False
    # A result, or the synthetic playbook/state that precedes it (the only state frame with a request id).
    of_result = event.kind in (KIND_RESULT, KIND_STATE) and bool(event.request_id)
    if opened.results_only and not of_result:
        return False
    if of_result and event.kind and event.request_id:
        key = (event.kind, event.request_id)
        if key in results:
            return False
        results.add(key)
    return opened.stream.replayed(event)
