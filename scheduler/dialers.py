"""Dialers: how the scheduler starts a check-in for an attempt row.

``LineDialer`` asks a carrier line (``core.ports.PhoneLine``: Twilio or SIP) to ring the elder for
the scheduler's own ``CallAttempt`` row; the line then reports the call's progress to the call
pipeline, which moves the row, and the scheduler's ``dial_due`` job settles the ended call once
(retries, the no-answer ladder). Chat check-ins have their dialer beside their channel
(``bot.dialer.TelegramDialer``). ``ChannelDialer`` picks a dialer by the attempt's channel
(``phone``, ``telegram``); a channel nobody serves is an error the ladder records.
"""

from __future__ import annotations

import asyncio
import logging

from core.ports import CallRequest, DialError, Dialer, PhoneLine
from core.routing import line_for
from data.models import CallAttempt, Elder

log = logging.getLogger(__name__)


class LineDialer:
    """Phone attempts through carrier lines (``core.ports.PhoneLine``: Twilio, SIP), the line of
    each elder chosen by area (``core.routing.line_for``: ``phone.line_by_area``, else ``phone.line``)."""

    def __init__(self, app, lines: dict[str, PhoneLine]):
        self.app = app
        self.lines = dict(lines)

    def line_of(self, elder_id: int) -> PhoneLine:
        with self.app.db.session() as s:
            elder = s.get(Elder, elder_id)
            name = line_for(self.app.settings, county=elder.county, township=elder.township, village=elder.village)
        line = self.lines.get(name)
        if line is None:
            raise DialError(f"老人 {elder_id} 所在地区用 {name} 线路，但本进程没有这条线路 "
                            f"(phone line {name!r} is not running here; running: {', '.join(self.lines) or '-'})")
        return line

    async def dial(self, request: CallRequest) -> None:
        if not request.phone:
            raise DialError(f"老人 {request.elder_id} 没有电话号码 (no phone number)")
        line = await asyncio.to_thread(self.line_of, request.elder_id)
        call_id = await line.place(request.phone, request.attempt_id)
        with self.app.db.session() as s:
            attempt = s.get(CallAttempt, request.attempt_id)
            if attempt.provider_sid is None:
                attempt.provider_sid = call_id


class ChannelDialer:
    def __init__(self, dialers: dict[str, Dialer]):
        self.dialers = dict(dialers)

    async def dial(self, request: CallRequest) -> None:
        dialer = self.dialers.get(request.channel)
        if dialer is None:
            raise DialError(f"没有可用的{request.channel}问候渠道 (no dialer for channel {request.channel!r})")
        await dialer.dial(request)
