"""A small hand-made month (2026-11) of elders, visits, calls and tasks for the forms, report and
dashboard tests. The expected report figures are worked out by hand in tests/test_reports.py.

Areas and elders:
  兰考县/城关镇/幸福村: 王秀英 (失能), 李桂兰, 张德福
  兰考县/城关镇/和平村: 赵玉珍 (失能)
  兰考县/谷营镇/东村:   刘长山
  杞县/城郊乡/西村:     陈明华 (失能)
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from data.models import (
    Assistance,
    CallAttempt,
    CareService,
    EmergencyContact,
    Elder,
    HouseholdMember,
    LivingConditions,
    Task,
    Visit,
    VisitAnswer,
    Visitor,
    VisitTurn,
)

MONTH = "2026-11"
AS_OF = dt.datetime(2026, 11, 28, 12, 0)


def _elder(session, n, name, county, township, village, **kw):
    e = Elder(id_number=f"41022519450315{n:04d}", name=name, sex=kw.pop("sex", "F"),
              birth_date=dt.date(1945, 3, 15), phone=f"1380000{n:04d}", county=county, township=township,
              village=village, living_alone=kw.pop("living_alone", True), **kw)
    e.emergency_contacts.append(EmergencyContact(name=f"{name[0]}建国", relation="儿子", phone=f"1390000{n:04d}"))
    session.add(e)
    session.flush()
    return e


def _visit(session, elder, seq, method, day, status="complete", risk="none", month=11, **kw):
    v = Visit(elder_id=elder.id, seq=seq, method=method, visit_date=dt.date(2026, month, day), status=status,
              risk=risk, started_at=dt.datetime(2026, month, day, 9, 0), **kw)
    session.add(v)
    session.flush()
    return v


def _call(session, elder, day, status, n, visit=None):
    session.add(CallAttempt(elder_id=elder.id, visit_id=visit.id if visit else None,
                            slot_key=f"elder:{elder.id}:2026-11-{day:02d}:{n}", attempt_no=n, status=status,
                            scheduled_for=dt.datetime(2026, 11, day, 9, 0),
                            started_at=dt.datetime(2026, 11, day, 9, 0)))


def build(session) -> dict:
    """Writes the month; returns the rows by name."""
    grid = Visitor(name="李网格", role="grid_worker", county="兰考县", township="城关镇", village="幸福村")
    session.add(grid)
    session.flush()
    a = _elder(session, 1, "王秀英", "兰考县", "城关镇", "幸福村", disabled_care=True, is_disabled=True,
               disability_cert_no="41022519450315000142", address="幸福路8号", lives_at_registration=True)
    b = _elder(session, 2, "李桂兰", "兰考县", "城关镇", "幸福村", empty_nest=True, living_alone=False)
    c = _elder(session, 3, "张德福", "兰考县", "城关镇", "幸福村", sex="M")
    d = _elder(session, 4, "赵玉珍", "兰考县", "城关镇", "和平村", disabled_care=True)
    e = _elder(session, 5, "刘长山", "兰考县", "谷营镇", "东村", sex="M")
    f = _elder(session, 6, "陈明华", "杞县", "城郊乡", "西村", disabled_care=True)
    v1, v2 = _printed_sample(session, a, grid)
    v3 = _other_visits(session, b, c, d, e, f)
    _tasks(session, a, b, e, f, v1)
    session.flush()
    return {"grid": grid, "a": a, "b": b, "c": c, "d": d, "e": e, "f": f, "v1": v1, "v2": v2, "v3": v3}


def _printed_sample(session, a, grid):
    """王秀英: sections 二/三/四 of the printed sample, a phone visit with answers and one in person."""
    a.household_members.append(HouseholdMember(seq=1, name="王秀英", sex="F", id_number=a.id_number,
                                               relation_to_head="户主", health="高血压", on_dibao=True))
    a.household_members.append(HouseholdMember(seq=2, name="王建国", sex="M", id_number="410225197001010033",
                                               relation_to_head="子", health="健康"))
    a.living_conditions = LivingConditions(drinking_water_safe=True, electricity_safe=False, housing_safe=True,
                                           household_monthly_income=Decimal("1200.00"),
                                           monthly_benefits=Decimal("350.50"))
    a.assistance.append(Assistance(unit_type="township_village", unit_name="幸福村村委会",
                                   responsible_person="李网格", measures="每周电话问候，代购药品"))
    v1 = _visit(session, a, 1, "phone", 3, risk="concern", visitor_id=grid.id, entered_by="探访系统",
                needs="希望有人帮忙买药", suggested_care="安排网格员每周上门一次", elder_signature="王秀英")
    answers = {"household_change": ("no_change", None, "none"), "speech": ("no_change", None, "none"),
               "mobility": ("worse", None, "concern"), "illness": ("serious", "高血压", "concern"),
               "mental": ("better", None, "none"), "housing_safety": ("safe", None, "none"),
               "water_electricity_safety": ("unsafe", None, "concern"), "gas_heating_safety": ("fairly_safe", None, "none"),
               "economy": ("no_change", None, "none"), "children_support": ("worse", None, "concern"),
               "daily_care": ("no_change", None, "none")}
    for key, (value, detail, risk) in answers.items():
        session.add(VisitAnswer(visit_id=v1.id, item_key=key, value=value, detail=detail, risk=risk))
    session.add(VisitTurn(visit_id=v1.id, seq=1, speaker="bot", text="王奶奶您好，我是探访助手。"))
    session.add(VisitTurn(visit_id=v1.id, seq=2, speaker="elder", text="腿疼得厉害，走路不方便。", risk="concern",
                          dimension="health"))
    v2 = _visit(session, a, 2, "in_person", 10, visitor_id=grid.id)
    session.add(CareService(elder_id=a.id, visit_id=v1.id, seq=1, service_date=dt.date(2026, 11, 5),
                            description="上门送药并检查电线", provider_name="李网格", satisfaction="satisfied",
                            in_person=True))
    _call(session, a, 3, "no_answer", 1)
    _call(session, a, 3, "completed", 2, v1)
    return v1, v2


def _other_visits(session, b, c, d, e, f):
    # 李桂兰: chat, complete, one economy concern
    v3 = _visit(session, b, 1, "chat", 5, risk="concern")
    session.add(VisitAnswer(visit_id=v3.id, item_key="economy", value="worse", risk="concern"))
    # 张德福: phone, incomplete (hung up); calls: busy, completed
    _visit(session, c, 1, "phone", 6, status="incomplete")
    _call(session, c, 6, "busy", 1)
    _call(session, c, 6, "completed", 2)
    # 赵玉珍: in person, complete (失能 covered)
    _visit(session, d, 1, "in_person", 12)
    # 刘长山: phone, complete; a cancelled visit does not count; one failed and one pending call
    _visit(session, e, 1, "phone", 20, risk="urgent")
    _visit(session, e, 2, "phone", 21, status="cancelled")
    _call(session, e, 20, "failed", 1)
    _call(session, e, 20, "answered", 2)
    _call(session, e, 29, "scheduled", 1)  # not finished: left out of the rates
    # 陈明华: only a visit in October (not this month)
    _visit(session, f, 1, "phone", 15, month=10)
    _call(session, f, 1, "no_answer", 1)  # 2026-11-01: not reached
    return v3


def _tasks(session, a, b, e, f, v1):
    session.add(Task(elder_id=e.id, kind="urgent", priority=1, dimension="health", state="open", title="摔倒，需上门",
                     deadline=dt.datetime(2026, 11, 20, 12, 0), created_at=dt.datetime(2026, 11, 20, 9, 30)))
    session.add(Task(elder_id=a.id, visit_id=v1.id, kind="concern", priority=2, dimension="safety",
                     state="in_progress", title="电线老化", deadline=dt.datetime(2026, 12, 3, 0, 0),
                     created_at=dt.datetime(2026, 11, 3, 9, 30)))
    session.add(Task(elder_id=b.id, kind="concern", priority=2, dimension="economy", state="done",
                     title="经济困难", deadline=dt.datetime(2026, 11, 10), created_at=dt.datetime(2026, 11, 5),
                     closed_at=dt.datetime(2026, 11, 8)))
    session.add(Task(elder_id=f.id, kind="coverage", priority=3, state="open", title="本月尚未探访",
                     deadline=dt.datetime(2026, 11, 25), created_at=dt.datetime(2026, 11, 20)))
