"""Dialers: how the scheduler starts a check-in for an attempt row.

``TwilioDialer`` asks Twilio (the official client, via :class:`voice.twilio_client.TwilioCallPlacer`)
to ring the elder for the scheduler's own ``CallAttempt`` row; Twilio's status callbacks then move
the row (``voice.phone.PhoneCheckIn.on_status``) and the scheduler's ``dial_due`` job settles the
ended call once (retries, the no-answer ladder). ``ChannelDialer`` picks a dialer by the attempt's
channel (``phone``, ``telegram``); a channel nobody serves is an error the ladder records.
"""

from __future__ import annotations

from data.models import CallAttempt
from scheduler.jobs import CallRequest, Dialer


class DialError(RuntimeError):
    """The check-in could not be started (the message says why, Chinese first)."""


class TwilioDialer:
    def __init__(self, app, placer):
        self.app = app
        self.placer = placer  # voice.twilio_client.TwilioCallPlacer (or anything with place_async)

    async def dial(self, request: CallRequest) -> None:
        if not request.phone:
            raise DialError(f"老人 {request.elder_id} 没有电话号码 (no phone number)")
        placed = await self.placer.place_async(request.phone, request.attempt_id)
        with self.app.db.session() as s:
            attempt = s.get(CallAttempt, request.attempt_id)
            if attempt.provider_sid is None:
                attempt.provider_sid = placed.sid


class ChannelDialer:
    def __init__(self, dialers: dict[str, Dialer]):
        self.dialers = dict(dialers)

    async def dial(self, request: CallRequest) -> None:
        dialer = self.dialers.get(request.channel)
        if dialer is None:
            raise DialError(f"没有可用的{request.channel}问候渠道 (no dialer for channel {request.channel!r})")
        await dialer.dial(request)
