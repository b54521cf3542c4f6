"""The record-form data model on SQLite and PostgreSQL."""

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from data.catalogue import load_catalogue
from data.models import (Assistance, CareService, Elder, HouseholdMember, LivingConditions, Task, Visit,
                         VisitAnswer)
from tests.helpers import make_elder


def test_catalogue_has_every_section_five_item_with_its_scale():
    cat = load_catalogue()
    assert len(cat.items) == 11
    assert set(cat.dimensions) == {"health", "economy", "family", "safety", "needs"}
    assert [v.label for v in cat.item("housing_safety").values] == ["安全", "较安全", "不安全"]
    assert cat.item("illness").value("严重").detail == "illness_name"
    assert cat.item("speech").value("worse").risk == "concern"
    with pytest.raises(ValueError, match="not on the scale"):
        cat.item("speech").value("不安全")


def test_elder_with_all_sections_round_trips(db):
    with db.session() as s:
        e = make_elder(s, disabled_care=True, family_planning=True, consent_share_family=True,
                       preferred_call_start=dt.time(9), preferred_call_end=dt.time(11))
        e.household_members.append(HouseholdMember(seq=1, name="王秀英", sex="F", id_number="410225194503150020",
                                                   relation_to_head="户主", health="高血压", on_dibao=True))
        e.living_conditions = LivingConditions(drinking_water_safe=True, electricity_safe=False, housing_safe=True,
                                               household_monthly_income=Decimal("860.50"),
                                               monthly_benefits=Decimal("420.00"))
        e.assistance.append(Assistance(unit_type="township_village", responsible_person="张主任", measures="每周上门"))
        elder_id = e.id
    with db.session() as s:
        e = s.get(Elder, elder_id)
        assert e.categories == ["独居", "失能", "计划生育特殊家庭"]
        assert e.household_members[0].on_dibao is True
        assert e.living_conditions.household_monthly_income == Decimal("860.50")
        assert e.assistance[0].unit_type == "township_village"
        assert e.emergency_contacts[0].phone == "+8613900002222"  # normalised to E.164 when set
        assert e.preferred_call_start == dt.time(9)


def test_duplicate_id_number_and_bad_enum_are_refused(db):
    with db.session() as s:
        make_elder(s)
    with pytest.raises(IntegrityError):
        with db.session() as s:
            make_elder(s, name="重复")
    with pytest.raises(IntegrityError):
        with db.session() as s:
            make_elder(s, id_number="410225195001010013", preferred_channel="pigeon")
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Elder)) == 1


def test_visit_answers_one_per_item_and_care_service(db):
    with db.session() as s:
        e = make_elder(s)
        v = Visit(elder_id=e.id, seq=1, method="phone", visit_date=dt.date(2026, 11, 28))
        v.answers.append(VisitAnswer(item_key="illness", value="serious", detail="高血压", risk="concern"))
        s.add(v)
        s.flush()
        t = Task(elder_id=e.id, visit_id=v.id, kind="concern", priority=2, title="健康关注")
        s.add(t)
        s.flush()
        s.add(CareService(elder_id=e.id, visit_id=v.id, task_id=t.id, seq=1, service_date=dt.date(2026, 11, 29),
                          description="家庭医生上门量血压", satisfaction="satisfied"))
        visit_id = v.id
    with pytest.raises(IntegrityError):
        with db.session() as s:
            s.add(VisitAnswer(visit_id=visit_id, item_key="illness", value="no_change"))
    with db.session() as s:
        v = s.get(Visit, visit_id)
        assert v.answer("illness").detail == "高血压"
        assert v.status == "in_progress"


def test_task_priority_and_state_are_constrained(db):
    with db.session() as s:
        e = make_elder(s)
        elder_id = e.id
    for bad in ({"priority": 4}, {"state": "lost"}):
        with pytest.raises(IntegrityError):
            with db.session() as s:
                s.add(Task(elder_id=elder_id, kind="urgent", title="x", **{"priority": 1, **bad}))
