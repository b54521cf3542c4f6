"""Escalation: what a graded answer, an unanswered phone or an undelivered emergency message turns
into (tasks + notifications).

Everything here runs inside the caller's unit of work (never commits), so a task and its
notifications are written together with the turn or the call outcome that caused them.

* urgent answer -> P1 task (kind ``urgent``) for the responsible visitor with an acknowledgement
  deadline; every emergency contact is told, and the visitor with the elder's address and
  emergency contact — each on their own channel (Telegram, WeCom or SMS; ``notify``), an urgent
  message falling back to SMS when the chat fails.
* concern -> P2 task routed by dimension (``escalation.routes``), with a deadline; a repeated
  concern of the same elder and dimension is merged into the open task.
* no answer -> the ladder of ``scheduler.no_answer`` (retries, ask the family, a visitor call-back
  task, an in-person visit task after two missed days).
* a P1 task not acknowledged by its deadline -> the visitor's supervisor (level by level).
* a message of a P1 task the outbox gave up on -> a P1 task for the supervisor, told on another
  channel (``undelivered``).

The units: ``routing`` (who), ``wording`` (what is said), ``notify`` (through the outbox),
``tasks`` (the tasks made or merged), ``ladder`` (the no-answer ladder), ``outcome`` (settling a
call's status), ``overdue`` and ``undelivered``.
"""

from core.escalation.ladder import missed_days_running
from core.escalation.notify import notify_contacts, notify_handed, notify_person, notify_visitor, task_card
from core.escalation.outcome import record_call_outcome, report_call_outcome
from core.escalation.overdue import escalate_overdue
from core.escalation.routing import area_visitors, responsible_visitor, routed_visitor, supervisor_of
from core.escalation.tasks import IN_PERSON_KINDS, escalate_grade, merge, request_callback
from core.escalation.undelivered import escalate_undelivered, undelivered_urgent
from core.escalation.wording import DIMENSION_LABELS, contact_line, full_address

merge_task = merge  # for the other services that raise tasks (core/alerts.py)

__all__ = [
    "DIMENSION_LABELS", "IN_PERSON_KINDS", "area_visitors", "escalate_grade", "escalate_overdue",
    "escalate_undelivered", "undelivered_urgent",
    "missed_days_running", "notify_contacts", "notify_visitor", "record_call_outcome", "report_call_outcome",
    "request_callback", "responsible_visitor", "routed_visitor", "supervisor_of", "task_card", "notify_handed",
    "notify_person",
    "contact_line", "full_address", "merge_task",
]
