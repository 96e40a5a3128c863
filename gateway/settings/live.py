"""Settings of live results: SSE streams and where ``playbook/state`` frames come from."""

from __future__ import annotations

from pydantic import Field

from gateway.settings.common import SettingsGroup


class LiveSettings(SettingsGroup):
    """SSE heartbeats and buffers, streams per session, and the playbook/state polling fallback."""

    gateway_heartbeat_interval_secs: float = Field(30.0, gt=0)
    gateway_sse_client_buffer: int = Field(256, gt=0)
    gateway_sse_max_per_session: int = Field(16, gt=0)
    # playbook/state (issue 15): polling NoETL when its event mirror is not in JetStream; 0 turns it off.
    gateway_playbook_state_poll_secs: float = Field(2.0, ge=0)
    gateway_playbook_state_poll_max: int = Field(50, gt=0)
