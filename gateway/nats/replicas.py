"""Every bucket and stream at ``NATS_REPLICAS`` copies: created so, scaled so, or reported.

On a JetStream cluster a bucket with one replica lives on one node: that node's loss loses the
sessions, pending requests or events in it (docs/deployment.md, "Clustered NATS"). So each set-up
(every connect) checks the replica count of what it uses:

* missing: created with ``NATS_REPLICAS`` replicas;
* present with another count: scaled (a stream config update; a cluster moves the data itself);
* refused by the server (a single nats-server takes no more than one replica, a cluster with too
  few nodes cannot place them): an ERROR naming the bucket, what it has and what was asked, and
  the set-up goes on with what exists — never a silent R1. ``NatsLink.replica_shortfalls`` keeps
  the refusals for whoever reports the link's state.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError, ServerError
from nats.js.kv import KeyValue

from gateway.nats.link import NatsLink

log = logging.getLogger("gateway.nats")

_NOT_CLUSTERED = 10074  # "replicas > 1 not supported in non-clustered mode"
_INSUFFICIENT = 10005  # "insufficient resources" (fewer nodes than replicas)
_NAME_IN_USE = 10058  # "stream name already in use with a different configuration"


def _refused_replicas(exc: Exception) -> bool:
    """The server said no to the replica count (not to the rest of the configuration)."""
    if not isinstance(exc, ServerError | BadRequestError):
        return False
    return exc.err_code in (_NOT_CLUSTERED, _INSUFFICIENT) or "replica" in (exc.description or "").lower()


def _report(link: NatsLink, what: str, has: int, exc: Exception) -> None:
    reason = getattr(exc, "description", None) or type(exc).__name__
    link.replica_shortfalls[what] = f"{has} of {link.replicas} replicas: {reason}"
    log.error(
        "%s has %d replica(s) but NATS_REPLICAS=%d; NATS refused the change (%s). Losing the node that "
        "holds it loses its data: run a JetStream cluster with at least %d nodes, or set NATS_REPLICAS=%d",
        what,
        has,
        link.replicas,
        reason,
        link.replicas,
        has,
    )


async def _scale(link: NatsLink, js: JetStreamContext, info: api.StreamInfo, what: str) -> api.StreamInfo:
    """Update an existing stream to ``link.replicas`` replicas (or report why not)."""
    config = info.config
    has = int(config.num_replicas or 1)
    if has == link.replicas:
        link.replica_shortfalls.pop(what, None)
        return info
    config.num_replicas = link.replicas
    try:
        scaled = await js.update_stream(config)
    except (ServerError, BadRequestError) as exc:
        if not _refused_replicas(exc):
            raise
        _report(link, what, has, exc)
        return info
    link.replica_shortfalls.pop(what, None)
    log.warning("%s scaled from %d to %d replicas (NATS_REPLICAS)", what, has, link.replicas)
    return scaled


async def ensure_bucket(link: NatsLink, name: str, *, history: int, ttl: float) -> KeyValue:
    """The KV bucket ``name`` with ``NATS_REPLICAS`` replicas (created, scaled, or reported)."""
    js = link.js
    assert js is not None
    what = f"KV bucket {name}"
    try:
        info = await js.stream_info(f"KV_{name}")
    except NotFoundError:
        try:
            await js.create_key_value(bucket=name, history=history, ttl=ttl, replicas=link.replicas)
        except (ServerError, BadRequestError) as exc:
            if link.replicas == 1 or not _refused_replicas(exc):
                raise
            _report(link, what, 1, exc)
            await js.create_key_value(bucket=name, history=history, ttl=ttl, replicas=1)
        else:
            link.replica_shortfalls.pop(what, None)
        log.info("created KV bucket %s (max age %ss, %d replica(s))", name, int(ttl), link.replicas)
    else:
        await _scale(link, js, info, what)
    return await js.key_value(name)


async def _add_or_update(js: JetStreamContext, config: api.StreamConfig) -> api.StreamInfo:
    try:
        return await js.add_stream(config)
    except BadRequestError as exc:
        if exc.err_code != _NAME_IN_USE:
            raise
    # Exists with other settings (another retention, another replica count): adopt ours.
    info = await js.update_stream(config)
    log.info("updated stream %s to this gateway's settings (%d replica(s))", config.name, config.num_replicas or 1)
    return info


async def ensure_stream(link: NatsLink, config: api.StreamConfig) -> api.StreamInfo:
    """The stream of ``config`` with ``NATS_REPLICAS`` replicas: added, updated to ``config``, or reported."""
    js = link.js
    assert js is not None
    what = f"stream {config.name}"
    config.num_replicas = link.replicas
    try:
        info = await _add_or_update(js, config)
    except (ServerError, BadRequestError) as exc:
        if link.replicas == 1 or not _refused_replicas(exc):
            raise
        try:
            has = int((await js.stream_info(str(config.name))).config.num_replicas or 1)
        except NotFoundError:
            has = 1
        _report(link, what, has, exc)
        config.num_replicas = has
        return await _add_or_update(js, config)
    link.replica_shortfalls.pop(what, None)
    return info
