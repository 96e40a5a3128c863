"""JetStream writes that wait for their ack, cheaper per call than nats-py's ``request()``.

The result callback makes three acknowledged writes (the spend, the result's publish, the slots'
compare-and-set; issue 19, "Hot paths" → Callbacks). nats-py's ``request()`` draws two random bytes
from the OS per call (``secrets.token_hex``: a system call), wraps the wait in ``asyncio.wait_for``
and its KV layer checks every key with a regular expression. Here one wildcard inbox subscription
per connection takes the acks; a call is a counter token and a future (no timer of its own: one
sweep every ``EXPIRY_TICK_SECS`` fails the waits past their timeout, while any wait). Errors are raised
as nats-py raises them (``APIError``, ``KeyWrongLastSequenceError``, ``NoStreamResponseError``,
``nats.errors.TimeoutError``), so the callers' handling is unchanged.
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from typing import Any

import orjson
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError, KeyWrongLastSequenceError, NoStreamResponseError
from nats.js.kv import KeyValue

_WRONG_LAST_SEQUENCE = (10071, 10164)  # as nats-py's KeyValue maps them
EXPIRY_TICK_SECS = 0.25  # a wait fails at most this much after its timeout


class AckInbox:
    """One connection's acks, by token, on ``{inbox}.<token>``."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._tokens = itertools.count(1)
        self._waiting: dict[str, tuple[asyncio.Future[Any], float]] = {}  # token → (its wait, when it expires)
        self._ready: asyncio.Future[None] | None = None
        self._sweeping = False

    async def _subscribe(self) -> None:
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            try:
                prefix = self._nc.new_inbox() + "."
                await self._nc.subscribe(prefix + "*", cb=self._on_ack)  # nats-py renews it after a reconnect
                self._prefix = prefix
                self._ready.set_result(None)
            except BaseException as exc:
                self._ready.set_exception(exc)
                self._ready.exception()  # retrieved here: the callers waiting on it raise it
                self._ready = None
                raise
        elif not self._ready.done():
            await asyncio.shield(self._ready)

    async def _on_ack(self, msg: Any) -> None:
        waiting = self._waiting.pop(msg.subject[len(self._prefix) :], None)
        if waiting is not None and not waiting[0].done():
            waiting[0].set_result(msg)

    def _sweep(self) -> None:
        """Fail the waits past their timeout (one timer for all of them, not one per call)."""
        now = asyncio.get_running_loop().time()
        expired = [token for token, (_, expires) in self._waiting.items() if expires <= now]
        for token in expired:
            future = self._waiting.pop(token)[0]
            if not future.done():
                future.set_exception(NatsTimeout())
        self._sweeping = bool(self._waiting)
        if self._sweeping:
            asyncio.get_running_loop().call_later(EXPIRY_TICK_SECS, self._sweep)

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None, timeout: float) -> Any:
        """Publish into a stream and wait for its ack: the ack's JSON (``seq``, ``duplicate``)."""
        if not self._prefix:
            await self._subscribe()
        token = str(next(self._tokens))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting[token] = (future, loop.time() + timeout)
        if not self._sweeping:
            self._sweeping = True
            loop.call_later(EXPIRY_TICK_SECS, self._sweep)
        try:
            await self._nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
            msg = await future
        finally:
            self._waiting.pop(token, None)
        if msg.headers and msg.headers.get("Status") == "503":
            raise NoStreamResponseError
        ack = orjson.loads(msg.data)
        if "error" in ack:
            raise APIError.from_error(ack["error"])
        return ack


_inboxes: weakref.WeakKeyDictionary[Client, AckInbox] = weakref.WeakKeyDictionary()


def ack_inbox(nc: Client) -> AckInbox:
    """The connection's ack inbox (made on first use)."""
    inbox = _inboxes.get(nc)
    if inbox is None:
        inbox = _inboxes[nc] = AckInbox(nc)
    return inbox


async def kv_write(nc: Client | None, kv: KeyValue, key: str, value: bytes, last: int) -> int:
    """``kv.update(key, value, last=last)`` (``last`` 0: only if the key holds nothing; a deleted
    key then goes through nats-py's ``create``, which knows its tombstone): the new revision."""
    if nc is None or not _plain(key):  # nats-py's own path: it refuses what is not a key (InvalidKeyError)
        return await (kv.create(key, value) if last == 0 else kv.update(key, value, last=last))
    headers = {"Nats-Expected-Last-Subject-Sequence": str(last)}
    try:
        ack = await ack_inbox(nc).publish(kv._pre + key, value, headers, kv._js._timeout)
    except APIError as err:
        if err.err_code not in _WRONG_LAST_SEQUENCE:
            raise
        if last == 0:
            return await kv.create(key, value)  # a tombstone, or really there: nats-py tells which
        raise KeyWrongLastSequenceError(description=err.description) from None
    return int(ack["seq"])


def _plain(key: str) -> bool:
    """A key that is a plain subject token sequence (the gateway's are hashes, uuids and prefixes)."""
    return (
        bool(key)
        and key[0] != "."
        and " " not in key
        and "*" not in key
        and ">" not in key
        and "\t" not in key
        and "\r" not in key
        and "\n" not in key
    )
