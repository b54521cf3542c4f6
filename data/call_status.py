"""The call statuses of the whole project: one owner, every line and job speaks these.

A call attempt (``data.models.CallAttempt``) moves forward only:

    scheduled -> queued -> ringing -> answered -> completed
                                   \\-> busy | no_answer | failed | canceled | machine

Twilio's ``CallStatus`` values and SIP response codes are mapped onto these by each line's own
codec (``voice/twilio_codec.py``, ``voice/sip_codes.py``); the scheduler's no-answer ladder, the
recovery sweep and the reports read only these names.
"""

from __future__ import annotations

SCHEDULED = "scheduled"    # planned, not yet dialed
QUEUED = "queued"          # claimed by a dialer, the line was asked to ring
RINGING = "ringing"
ANSWERED = "answered"      # someone picked up; the check-in is running
IN_PROGRESS = "in_progress"  # older rows: same rank as answered
COMPLETED = "completed"    # answered and ended
BUSY = "busy"              # busy, or the callee rejected the call
NO_ANSWER = "no_answer"    # rang out
FAILED = "failed"          # could not be placed, the line failed, one-way audio, lost in a crash
CANCELED = "canceled"      # not dialed (quiet hours, paused elder) or canceled while ringing
MACHINE = "machine"        # an answering machine picked up

ALL = (SCHEDULED, QUEUED, RINGING, ANSWERED, COMPLETED, BUSY, NO_ANSWER, FAILED, CANCELED, MACHINE, IN_PROGRESS)
#: the call did not reach anyone: the no-answer ladder climbs
NOT_REACHED = (BUSY, NO_ANSWER, FAILED, CANCELED, MACHINE)
#: someone picked up
REACHED = (ANSWERED, COMPLETED, IN_PROGRESS)
#: the call is over; nothing moves it any more
FINAL = frozenset(NOT_REACHED + (COMPLETED,))
#: waiting for the line: the crash sweep settles these when they grow stale
PENDING = (QUEUED, RINGING)

_RANK = {SCHEDULED: 0, QUEUED: 1, RINGING: 2, ANSWERED: 3, IN_PROGRESS: 3}


def is_final(status: str | None) -> bool:
    return status in FINAL


def next_status(current: str, proposed: str) -> str:
    """The status after ``proposed`` is reported on a call now in ``current``.

    Callbacks and line events may arrive late, twice or out of order: a final status is never
    overwritten, and a non-final one never moves the call backwards (ringing after answered).
    """
    if proposed not in ALL:
        raise ValueError(f"未知的通话状态 {proposed!r} (unknown call status)")
    if current in FINAL:
        return current
    if proposed in FINAL:
        return proposed
    return proposed if _RANK.get(proposed, 0) > _RANK.get(current, 0) else current
