"""The visit plan: when each elder is called, from the rules in ``config.yml`` (section ``scheduler``).

* frequency by category (the most frequent of the elder's categories applies), raised by an
  active campaign in the elder's area;
* the elder's preferred time window (else ``default_call_window``), never inside quiet hours;
* public holidays (no routine calls), pauses (``Elder.paused_until``: hospital stay, travel);
* elders who refused visits (``consent_visit`` false) or who are visited in person only
  (``preferred_channel == "in_person"``) get no automatic calls — the coverage guard gives them
  in-person tasks.

All functions are pure (plus read queries): database times are naive UTC, plans are made in the
local time zone of ``settings.app.timezone``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy import or_, and_, select
from sqlalchemy.orm import Session

from data.models import CATEGORIES, CallAttempt, Campaign, Elder, Visit

DEFAULT_FREQUENCY_DAYS = 30
SUCCESS_CALL_STATUSES = ("answered", "completed", "in_progress")

# Safety knowledge read out in every check-in of a campaign, by reason (Chinese first).
CAMPAIGN_MESSAGES: dict[str, str] = {
    "高温": "最近天气炎热，请多喝水，中午别出门，开空调或风扇，觉得头晕胸闷马上打120。",
    "寒潮": "寒潮来了，请注意保暖；用煤炉取暖一定要开窗通风，防止煤气中毒。",
    "暴雨": "最近有暴雨，请不要外出，远离低洼和危房，家里进水或断电请马上联系网格员。",
    "大风": "最近有大风，请关好门窗，不要在广告牌和大树下停留。",
    "大雪": "最近有大雪，路面湿滑，请尽量不要出门，出门要有人陪。",
    "节日": "节日快到了，祝您节日快乐！有什么需要尽管跟我们说，出门走亲戚注意安全。",
    "疫情": "最近有传染病流行，请少去人多的地方，勤洗手，身体不舒服及时就医。",
}
DEFAULT_CAMPAIGN_MESSAGE = "最近天气多变，请注意安全，有困难随时联系网格员或拨打120。"


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def tz(settings) -> ZoneInfo:
    return _zone(settings.app.timezone)


def to_local(settings, utc_naive: dt.datetime) -> dt.datetime:
    return utc_naive.replace(tzinfo=dt.timezone.utc).astimezone(tz(settings)).replace(tzinfo=None)


def to_utc(settings, local_naive: dt.datetime) -> dt.datetime:
    return _to_utc(settings.app.timezone, local_naive)


@lru_cache(maxsize=4096)
def _to_utc(zone: str, local_naive: dt.datetime) -> dt.datetime:
    return local_naive.replace(tzinfo=_zone(zone)).astimezone(dt.timezone.utc).replace(tzinfo=None)


def local_today(settings, now_utc: dt.datetime) -> dt.date:
    return to_local(settings, now_utc).date()


def day_bounds_utc(settings, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a local day, in naive UTC."""
    start = dt.datetime.combine(day, dt.time())
    return to_utc(settings, start), to_utc(settings, start + dt.timedelta(days=1))


@lru_cache(maxsize=64)
def parse_window(text: str) -> tuple[dt.time, dt.time]:
    """``"21:00-08:00"`` -> (21:00, 08:00). A clear error for bad input."""
    try:
        a, b = (part.strip() for part in text.split("-"))
        return dt.time.fromisoformat(a), dt.time.fromisoformat(b)
    except ValueError as exc:
        raise ValueError(f"时间段格式应为 HH:MM-HH:MM (bad time window {text!r})") from exc


def in_window(t: dt.time, window: tuple[dt.time, dt.time]) -> bool:
    start, end = window
    if start <= end:
        return start <= t < end
    return t >= start or t < end  # wraps midnight


def is_quiet(settings, when_utc: dt.datetime) -> bool:
    """True if ``when_utc`` (naive UTC) falls inside quiet hours (local time)."""
    return in_window(to_local(settings, when_utc).time(), parse_window(settings.scheduler.quiet_hours))


def is_holiday(settings, day: dt.date) -> bool:
    return day.isoformat() in _holidays(tuple(str(h) for h in settings.scheduler.holidays))


@lru_cache(maxsize=8)
def _holidays(days: tuple[str, ...]) -> frozenset[str]:
    return frozenset(days)


def category_frequency(settings, elder: Elder) -> int:
    freqs = settings.scheduler.frequency_days
    days = [freqs[label] for attr, label in CATEGORIES.items() if getattr(elder, attr) and label in freqs]
    return min(days) if days else DEFAULT_FREQUENCY_DAYS


def area_path(elder: Elder) -> str:
    return "/".join([elder.county or "", elder.township or "", elder.village or ""])


def campaign_matches(campaign: Campaign, elder: Elder) -> bool:
    want = [p for p in campaign.area.strip("/").split("/") if p]
    have = [elder.county, elder.township, elder.village]
    return want == have[: len(want)]


def active_campaigns(session: Session, day: dt.date) -> list[Campaign]:
    stmt = select(Campaign).where(Campaign.stopped_at.is_(None), Campaign.starts_on <= day, Campaign.until >= day)
    return list(session.scalars(stmt.order_by(Campaign.id)))


def campaigns_for(campaigns: list[Campaign], elder: Elder) -> list[Campaign]:
    return [c for c in campaigns if campaign_matches(c, elder)]


def frequency_days(settings, elder: Elder, campaigns: list[Campaign] = ()) -> int:
    freq = category_frequency(settings, elder)
    for c in campaigns_for(list(campaigns), elder):
        freq = min(freq, max(1, c.frequency_days or 1))
    return freq


def safety_messages(campaigns: list[Campaign], elder: Elder) -> list[str]:
    out: list[str] = []
    for c in campaigns_for(campaigns, elder):
        text = c.message or CAMPAIGN_MESSAGES.get(c.reason, DEFAULT_CAMPAIGN_MESSAGE)
        if text not in out:
            out.append(text)
    return out


def call_window(settings, elder: Elder) -> tuple[dt.time, dt.time]:
    if elder.preferred_call_start and elder.preferred_call_end:
        return elder.preferred_call_start, elder.preferred_call_end
    return parse_window(settings.scheduler.default_call_window)


def _spread(elder_id: int, day: dt.date, span_minutes: int) -> int:
    """A stable offset inside the window so that calls are spread, not all at the window start."""
    if span_minutes <= 0:
        return 0
    h = hashlib.sha1(f"{elder_id}:{day.isoformat()}".encode()).digest()
    return int.from_bytes(h[:4], "big") % span_minutes


def first_slot(settings, elder: Elder, day: dt.date) -> dt.datetime | None:
    """The local time of the day's first call, or None if the window lies wholly in quiet hours."""
    start, end = call_window(settings, elder)
    cfg = settings.scheduler.no_answer
    retry_total = sum(cfg.retry_minutes[: max(0, cfg.max_attempts_per_day - 1)])
    allowed, usable = _allowed_minutes(day, start, end, settings.scheduler.quiet_hours, retry_total)
    if not allowed:
        return None
    return allowed[_spread(elder.id, day, usable)]


@lru_cache(maxsize=256)
def _allowed_minutes(day: dt.date, start: dt.time, end: dt.time, quiet_hours: str,
                     retry_total: int) -> tuple[tuple[dt.datetime, ...], int]:
    """The window's minutes outside quiet hours on ``day``, and how many of them may hold a first
    call (room is left for the day's retries when there is room). Cached: at province scale
    almost every elder shares the default window."""
    quiet = parse_window(quiet_hours)
    base = dt.datetime.combine(day, start)
    stop = dt.datetime.combine(day, end)
    if stop <= base:
        stop += dt.timedelta(days=1)
    allowed = []
    t = base
    while t < stop and t.date() == day:
        if not in_window(t.time(), quiet):
            allowed.append(t)
        t += dt.timedelta(minutes=1)
    usable = len(allowed) - retry_total if len(allowed) > retry_total else max(1, len(allowed) // 2)
    return tuple(allowed), usable


@dataclass(frozen=True)
class DayPlan:
    elder_id: int
    day: dt.date
    due: bool
    reason: str  # why (not): Chinese
    first_call_local: dt.datetime | None = None
    channel: str = "phone"
    frequency_days: int = 0
    messages: tuple[str, ...] = ()


def last_contact_day(session: Session, settings, elder_id: int) -> dt.date | None:
    """The local day of the elder's last successful contact (an answered call or a complete visit)."""
    a = session.scalar(
        select(CallAttempt.answered_at)
        .outerjoin(Visit, Visit.id == CallAttempt.visit_id)
        .where(CallAttempt.elder_id == elder_id,
               CallAttempt.status.in_(SUCCESS_CALL_STATUSES),
               CallAttempt.answered_at.is_not(None),
               # a call whose visit was cancelled (a relative answered, "call later") reached nobody
               or_(Visit.id.is_(None), Visit.status != "cancelled"))
        .order_by(CallAttempt.answered_at.desc()).limit(1)
    )
    v = session.scalar(
        select(Visit.visit_date).where(Visit.elder_id == elder_id, Visit.status == "complete")
        .order_by(Visit.visit_date.desc()).limit(1)
    )
    days = [d for d in (to_local(settings, a).date() if a else None, v) if d is not None]
    return max(days) if days else None


def plan_day(session: Session, settings, elder: Elder, day: dt.date, campaigns: list[Campaign] | None = None
             ) -> DayPlan:
    """Is the elder called on local ``day``, when, on which channel, with which safety messages."""
    campaigns = active_campaigns(session, day) if campaigns is None else campaigns
    return decide_day(settings, elder, day, campaigns, lambda: last_contact_day(session, settings, elder.id))


def decide_day(settings, elder, day: dt.date, campaigns: list[Campaign], last_contact, *,
               freq: int | None = None, msgs: tuple[str, ...] | None = None) -> DayPlan:
    """``plan_day`` without queries: ``last_contact`` is a date, None, or a function giving it
    (asked only when the rules before it leave the elder due). ``freq`` and ``msgs`` may be given
    when the caller computed them for elders alike (same categories and area)."""
    freq = frequency_days(settings, elder, campaigns) if freq is None else freq
    msgs = tuple(safety_messages(campaigns, elder)) if msgs is None else msgs

    def no(reason: str) -> DayPlan:
        return DayPlan(elder.id, day, False, reason, frequency_days=freq, messages=msgs)

    if not elder.consent_visit:
        return no("不同意探访")
    if elder.preferred_channel == "in_person":
        return no("仅上门探访")
    if elder.paused_until is not None and day <= elder.paused_until:
        return no(f"暂停至 {elder.paused_until.isoformat()}" + (f"（{elder.pause_reason}）" if elder.pause_reason else ""))
    if is_holiday(settings, day) and not msgs:
        return no("节假日")
    if elder.preferred_channel == "phone" and not elder.phone:
        return no("没有电话号码")
    if elder.preferred_channel == "telegram" and not elder.telegram_chat_id:
        return no("没有 Telegram 对话")
    last = last_contact() if callable(last_contact) else last_contact
    if last is not None and (day - last).days < freq:
        return no(f"上次联系 {last.isoformat()}，每 {freq} 天一次")
    slot = first_slot(settings, elder, day)
    if slot is None:
        return no("可拨打时段都在静默时段内")
    return DayPlan(elder.id, day, True, "到期" if last else "首次问候", slot, elder.preferred_channel, freq, msgs)


def last_contact_days(session: Session, settings, lo: int, hi: int) -> dict[int, dt.date]:
    """``last_contact_day`` for every elder with ``lo <= id <= hi``, in two grouped queries."""
    from sqlalchemy import func

    out: dict[int, dt.date] = {}
    answered = session.connection().execute(
        select(CallAttempt.elder_id, func.max(CallAttempt.answered_at))
        .outerjoin(Visit, Visit.id == CallAttempt.visit_id)
        .where(CallAttempt.elder_id.between(lo, hi), CallAttempt.status.in_(SUCCESS_CALL_STATUSES),
               CallAttempt.answered_at.is_not(None), or_(Visit.id.is_(None), Visit.status != "cancelled"))
        .group_by(CallAttempt.elder_id))
    for elder_id, at in answered:
        out[elder_id] = to_local(settings, at).date()
    visited = session.connection().execute(
        select(Visit.elder_id, func.max(Visit.visit_date))
        .where(Visit.elder_id.between(lo, hi), Visit.status == "complete").group_by(Visit.elder_id))
    for elder_id, day in visited:
        if day is not None and (elder_id not in out or day > out[elder_id]):
            out[elder_id] = day
    return out


def slot_key(elder_id: int, day: dt.date, attempt_no: int) -> str:
    return f"elder:{elder_id}:{day.isoformat()}:{attempt_no}"


_SLOT_RE = re.compile(r"^elder:(\d+):(\d{4}-\d{2}-\d{2}):(\d+)$")


def parse_slot_key(key: str | None) -> tuple[int, dt.date, int] | None:
    """``elder:12:2026-11-28:2`` -> (12, date, 2); None for keys the scheduler did not make
    (a call placed by hand has another key and is not part of the plan)."""
    m = _SLOT_RE.match(key or "")
    if not m:
        return None
    try:
        return int(m.group(1)), dt.date.fromisoformat(m.group(2)), int(m.group(3))
    except ValueError:
        return None


def elders_in_area(stmt, area: str | None):
    """Filter a ``select(Elder)`` by an area prefix ``县/乡镇/村``."""
    if not area:
        return stmt
    parts = [p for p in area.strip("/").split("/") if p]
    cols = [Elder.county, Elder.township, Elder.village]
    return stmt.where(and_(*[c == p for c, p in zip(cols, parts)]))

