"""Small builders for tests (real rows through the real models)."""

from __future__ import annotations

import datetime as dt

from data.models import EmergencyContact, Elder, Visitor


def make_elder(session, *, id_number="410225194503150012", name="王秀英", village="幸福村", **kw) -> Elder:
    elder = Elder(id_number=id_number, name=name, sex=kw.pop("sex", "M"), birth_date=dt.date(1945, 3, 15),
                  phone=kw.pop("phone", "13800001111"), county=kw.pop("county", "兰考县"),
                  township=kw.pop("township", "城关镇"), village=village, living_alone=kw.pop("living_alone", True),
                  **kw)
    elder.emergency_contacts.append(EmergencyContact(name="王建国", relation="儿子", phone="13900002222", priority=1))
    session.add(elder)
    session.flush()
    return elder


def make_visitor(session, *, name="李网格", role="grid_worker", village="幸福村", **kw) -> Visitor:
    v = Visitor(name=name, role=role, county="兰考县", township="城关镇", village=village, **kw)
    session.add(v)
    session.flush()
    return v
