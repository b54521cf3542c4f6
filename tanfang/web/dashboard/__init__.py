"""The staff dashboard (/dashboard): login, the morning view, elder pages, exports. Chinese UI.

A web adapter of the wiring root (Starlette + Jinja2 templates in ``templates/``, autoescape on),
one handler per page:

=========================================  ==============================  =====================
path                                        handler                         template
=========================================  ==============================  =====================
``/dashboard/login`` GET/POST               ``account.login``               login.html
``/dashboard/logout`` POST                  ``account.logout``              —
``/dashboard/password`` GET/POST            ``account.password``            password.html
``/dashboard/``                             ``pages.home``                  home.html, trend.html
``/dashboard/elders``                       ``pages.elders``                elders.html
``/dashboard/elders/{id}``                  ``pages.elder_page``            elder.html
``/dashboard/report``                       ``pages.report_page``           report.html
``/dashboard/export/report.xlsx``           ``exports.export_report``       —
``/dashboard/export/forms.pdf``             ``exports.export_forms``        —
``/dashboard/export/form/{id}.{pdf|xlsx}``  ``exports.export_form``         —
=========================================  ==============================  =====================

Every page is scoped to the logged-in user's area (``core.auth.Principal.scope``): an elder or
visit outside it answers 404, and exports only contain rows inside it. Reads of personal data go
to the audit log; ID numbers, full phone numbers and transcripts only for ``can_see_sensitive``.
Every POST carries a CSRF token (``tanfang.web.security``).
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from data.models import utcnow
from tanfang.web.dashboard import account, exports, pages
from tanfang.web.dashboard.site import Site, secret_key

STATIC = Path(__file__).with_name("static")
__all__ = ["routes", "secret_key"]


async def _to_home(_request):
    return RedirectResponse("/dashboard/", status_code=307)


def routes(app, clock=utcnow) -> list:
    """The dashboard's routes; ``clock`` gives "now" (sessions, lockouts, overdue tasks, the month)."""
    site = Site(app, clock)
    return [
        Route("/dashboard", _to_home),
        Route("/dashboard/", site.page(pages.home)),
        Route("/dashboard/login", site.post(account.login), methods=["GET", "POST"]),
        Route("/dashboard/logout", site.page(account.logout), methods=["POST"]),
        Route("/dashboard/password", site.page(account.password), methods=["GET", "POST"]),
        Route("/dashboard/elders", site.page(pages.elders)),
        Route("/dashboard/elders/{elder_id:int}", site.page(pages.elder_page)),
        Route("/dashboard/report", site.page(pages.report_page)),
        Route("/dashboard/export/report.xlsx", site.page(exports.export_report)),
        Route("/dashboard/export/forms.pdf", site.page(exports.export_forms)),
        Route("/dashboard/export/form/{visit_id:int}.{fmt:str}", site.page(exports.export_form)),
        Mount("/dashboard/static", app=StaticFiles(directory=STATIC), name="dashboard-static"),
    ]
