"""Telling people: an escalation's messages go into the outbox (same unit of work as the task), each
on the route :mod:`core.routing` gives the person — their own channel (Telegram, WeCom, SMS) when
this deployment runs it, else SMS — with what every channel needs to show it:

* ``payload["task_id"]`` and ``payload["actions"]``: the task card's buttons, as core's action
  names (:mod:`core.task_actions`: what the task allows *this person*); each channel renders and
  parses its own buttons (Telegram ``bot/cards.py``, WeCom ``bot/wecom_wire.py``);
* ``template``: the SMS template and its variables (:mod:`core.sms_templates`), so the message can
  go as a mainland template SMS — first, or as the fallback of an urgent message;
* ``payload["person"]`` and ``payload["urgent"]``: who it is for and whether it falls back to SMS
  when the chat channel fails for good (:func:`core.outbox.fall_back`).

The channels that run come from the settings (:func:`core.routing.running_channels`). When none of
them reaches a person, the message is queued on the person's own first route anyway: it waits in
the outbox (and on the dashboard) until that channel is configured, as before routing.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.orm import Session

import core.task_actions as task_actions
from core import routing
from core.escalation import wording as w
from core.outbox import enqueue
from data.models import Elder, EmergencyContact, FamilyMember, OutboxMessage, Task, Visitor

log = logging.getLogger("core.escalation")

SUFFIX = {"telegram": "tg", "wecom": "wecom", "sms": "sms"}  # dedupe-key suffix of each channel
KIND_OF = {Visitor: "visitor", FamilyMember: "family", EmergencyContact: "emergency_contact"}


def task_card(task: Task, session: Session | None = None, person: Visitor | None = None) -> dict:
    """The card payload of ``task`` for ``person``: core's action names only (a supervisor's card
    also offers 指派); without a person, the assignee's buttons."""
    actions = task_actions.card_actions(task)
    if session is not None and person is not None:
        actions = task_actions.allowed_actions(session, task, task_actions.Actor("visitor", person.id)) or actions
    return {"task_id": task.id, "actions": actions}


def route_for(settings, person, *, urgent: bool, avoid: str | None = None) -> routing.Route | None:
    """The first route to ``person`` over the channels that run (see the module doc); ``avoid``
    names a channel to use only when there is no other (the one that just failed)."""
    found = (routing.routes(person, urgent=urgent, available=routing.running_channels(settings))
             or routing.routes(person, urgent=urgent))
    if avoid:
        found = [r for r in found if r.channel != avoid] or found
    return found[0] if found else None


def notify_person(session: Session, settings, person, *, body: str, dedupe_key: str, elder: Elder | None,
                  task: Task | None, now: dt.datetime, payload: dict | None = None, template: dict | None = None,
                  urgent: bool = False, avoid: str | None = None, key_suffix: bool = False) -> OutboxMessage | None:
    """Queue one message to a visitor, family member or emergency contact on their route.
    ``template`` is ``core.sms_templates.template_payload(...)``; ``key_suffix`` appends the
    channel to ``dedupe_key`` (``...:sms``)."""
    route = route_for(settings, person, urgent=urgent, avoid=avoid)
    kind = KIND_OF[type(person)]
    if route is None:
        log.warning("%s %s cannot be reached on any channel; not notified (%s)", kind, person.id, dedupe_key)
        return None
    full = {**(payload or {}), "person": {"kind": kind, "id": person.id}}
    if urgent:
        full["urgent"] = True
    return enqueue(session, channel=route.channel, recipient=route.address, body=body,
                   dedupe_key=f"{dedupe_key}:{SUFFIX[route.channel]}" if key_suffix else dedupe_key,
                   recipient_kind=kind, elder_id=elder.id if elder is not None else None,
                   task_id=task.id if task else None, payload=full, template=(template or {}).get("template"),
                   now=now)


def is_urgent(task: Task | None) -> bool:
    return task is not None and (task.priority == 1 or task.kind == "urgent")


def notify_visitor(session: Session, settings, visitor: Visitor | None, *, body: str, dedupe_key: str,
                   elder: Elder, task: Task | None, now: dt.datetime, payload: dict | None = None,
                   template: dict | None = None, avoid: str | None = None) -> list:
    """A visitor on their channel; a message of a P1 task is urgent (falls back to SMS)."""
    if visitor is None:
        return []
    msg = notify_person(session, settings, visitor, body=body, dedupe_key=dedupe_key, elder=elder, task=task,
                        now=now, payload=payload, template=template, urgent=is_urgent(task), avoid=avoid)
    return [msg] if msg else []


def notify_contacts(session: Session, settings, elder: Elder, *, body: str, key: str, task: Task | None,
                    now: dt.datetime, template: dict | None = None, family: bool = False) -> list:
    """Every emergency contact on their channel (an urgent task's message falls back to SMS); with
    ``family`` also the family members who consented to be told (``Elder.consent_share_family``).
    Dedupe keys ``<key>:ec<id>:<channel>`` / ``<key>:fm<id>:<channel>``."""
    people = list(elder.emergency_contacts)
    if family and elder.consent_share_family:
        people += list(elder.family_members)
    out = []
    for person in people:
        tag = f"ec{person.id}" if isinstance(person, EmergencyContact) else f"fm{person.id}"
        msg = notify_person(session, settings, person, body=body, dedupe_key=f"{key}:{tag}", elder=elder, task=task,
                            now=now, template=template, urgent=is_urgent(task), key_suffix=True)
        if msg is not None:
            out.append(msg)
    return out


def notify_handed(session: Session, settings, task: Task, visitor_ids: list[int], *, key: str,
                  now: dt.datetime) -> list:
    """The card of a task that changed hands (转派, 指派, 接单 of an unassigned task), for each new
    holder on their channel."""
    out = []
    for vid in visitor_ids:
        visitor = session.get(Visitor, vid)
        if visitor is None or not visitor.active:
            continue
        out += notify_visitor(session, settings, visitor, elder=task.elder, task=task, now=now,
                              dedupe_key=f"{key}:handed:{vid}"[:190], payload=task_card(task, session, visitor),
                              template=w.task_sms(task, task.elder, "转给您处理"),
                              body=w.handed_to_visitor(settings, task))
    return out
