"""``tanfang tasks | campaign | coverage | plan | simulate`` — scheduling and escalation commands."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import click
from sqlalchemy import select

from core import emergency, labels, plan, workforce
from core.coverage import coverage_guard, coverage_report, parse_month
from core.privacy import audit
from core.tasks import (
    PRIORITY_LABELS,
    TaskStateError,
    close_task,
    task_dict,
    transition,
)
from data.models import (
    HANDLING_ACTIONS,
    OPEN_TASK_STATES,
    Campaign,
    Elder,
    Task,
    utcnow,
)
from tanfang import wiring
from tanfang.cli.common import (UserError, area_option, date_option, echo_json, elder_id_option, json_option,
                                month_option, pass_app, task_actor_option)


def _date(value: str, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise UserError(f"{what} 日期格式应为 YYYY-MM-DD (bad date {value!r})") from exc


# ---- tasks ------------------------------------------------------------------------------------
@click.group("tasks")
def tasks_group() -> None:
    """后续任务 (follow-up tasks).

    来自问候、未接通的升级和覆盖检查 (raised by check-ins, the no-answer ladder and the coverage
    guard)."""


@tasks_group.command("list")
@click.option("--open", "only_open", is_flag=True, help="只看未完成的任务 (open, acknowledged, in progress)")
@elder_id_option(help="只看这位老人的任务 (only this elder's, by id)")
@json_option()
@pass_app
def tasks_list(app, only_open: bool, elder_id: int | None, as_json: bool) -> None:
    """列出任务，最紧急的在前 (list tasks, most urgent first)."""
    db = app.ready_db()
    with db.session() as s:
        stmt = select(Task)
        if only_open:
            stmt = stmt.where(Task.state.in_(OPEN_TASK_STATES))
        if elder_id is not None:
            stmt = stmt.where(Task.elder_id == elder_id)
        tasks = list(s.scalars(stmt.order_by(Task.priority, Task.deadline, Task.id)))
        rows, lines = [], []
        for t in tasks:
            d = task_dict(t)
            d["elder_name"] = t.elder.name
            d["assignee_name"] = t.assignee.name if t.assignee else None
            rows.append(d)
            lines.append(f"#{t.id:<5} {PRIORITY_LABELS[t.priority]:<6} {d['state_label']:<4} {d['kind_label']:<6} "
                         f"{d['elder_name']:<6} → {d['assignee_name'] or '未指派'}  "
                         f"截止 {labels.local_text(app.settings, t.deadline) or '-'}  {labels.plain(t.title)}")
        audit(s, app.actor, "read", "task", None, f"tasks list: {len(rows)} rows")
    if as_json:
        echo_json(rows)
        return
    click.echo("\n".join(lines) if lines else "没有任务 (no tasks)")


@tasks_group.command("show")
@click.argument("task_id", type=int)
@json_option()
@pass_app
def tasks_show(app, task_id: int, as_json: bool) -> None:
    """一个任务及其完整历史 (one task with its full history).

    时间按 app.timezone 显示 (times in app.timezone)."""
    db = app.ready_db()
    with db.session() as s:
        t = s.get(Task, task_id)
        if t is None:
            raise UserError(f"没有编号为 {task_id} 的任务 (no task {task_id})")
        d = task_dict(t, with_events=True)
        d["elder_name"] = t.elder.name
        d["assignee_name"] = t.assignee.name if t.assignee else None
        text = _task_text(app.settings, t, d)
        audit(s, app.actor, "read", "task", str(task_id))
    if as_json:
        echo_json(d)
        return
    click.echo(text)


def _task_text(settings, t: Task, d: dict) -> str:
    """A task as people read it: labels in Chinese, times in the configured zone."""
    def when(at) -> str:
        return labels.local_text(settings, at) or "-"

    lines = [f"任务 #{t.id}  {PRIORITY_LABELS[t.priority]}  {d['kind_label']}  状态：{d['state_label']}",
             f"老人：{d['elder_name']} (id {t.elder_id})  负责人：{d['assignee_name'] or '未指派'}",
             f"标题：{labels.plain(t.title)}"]
    if t.detail:
        lines.append(f"详情：{labels.plain(t.detail)}")
    lines.append(f"截止：{when(t.deadline)}  确认时限：{when(t.ack_deadline)}  "
                 f"上报级别：{t.escalation_level}  合并次数：{t.merged_count}")
    if t.outcome:
        lines.append(f"处理结果：{labels.plain(t.outcome)}")
    lines.append("历史：")
    for e in t.events:
        move = (f" {labels.label('task_state', e.from_state) or '新建'}→{labels.label('task_state', e.to_state)}"
                if e.to_state else "")
        lines.append(f"  {when(e.at)}  {labels.actor(e.actor):<14} {labels.label('task_event', e.action)}{move}  "
                     f"{labels.plain(e.note)}")
    return "\n".join(lines)


@tasks_group.command("ack")
@click.argument("task_id", type=int)
@task_actor_option()
@pass_app
def tasks_ack(app, task_id: int, actor: str) -> None:
    """确认接单 (acknowledge a task).

    停止 P1 任务的上报计时 (stops the P1 escalation clock)."""
    db = app.ready_db()
    with db.session() as s:
        t = s.get(Task, task_id)
        if t is None:
            raise UserError(f"没有编号为 {task_id} 的任务 (no task {task_id})")
        try:
            transition(s, t, "acknowledged", actor=actor)
        except TaskStateError as exc:
            raise UserError(str(exc)) from exc
    click.echo(f"任务 #{task_id} 已确认")


@tasks_group.command("done")
@click.argument("task_id", type=int)
@click.option("--outcome", required=True, help="处理结果 (the outcome)")
@click.option("--care", "description", default=None, help="关爱服务情况，记录表第六部分，默认同处理结果 (care given: form section 六; default: the outcome)")
@click.option("--in-person", is_flag=True, help="上门服务 (served in person)")
@click.option("--satisfaction", type=click.Choice(["satisfied", "fairly_satisfied", "dissatisfied"]), default=None,
              help="满意度 (the elder's satisfaction)")
@click.option("--provider", "provider_id", type=int, default=None, help="服务人员编号 (provider: visitor id)")
@click.option("--no-care-record", is_flag=True, help="不写关爱服务记录 (write no care record)")
@click.option("--handled", multiple=True,
              help="处置记录，紧急任务必填，可多次：" + " ".join(HANDLING_ACTIONS) + "，可加 @HH:MM "
                   "(what was done for an urgent task; repeatable; optional @HH:MM)")
@click.option("--minutes", type=int, default=None, help="服务时长，分钟，默认从到达到完成 (minutes of service; default: arrival to close)")
@task_actor_option()
@pass_app
def tasks_done(app, task_id, outcome, description, in_person, satisfaction, provider_id, no_care_record, handled,
               minutes, actor) -> None:
    """完成任务并写下结果 (close a task with its outcome).

    同时写关爱服务记录，即记录表第六部分 (and the care record of form section 六).

    紧急任务还要有处置记录：--handled，或写明做了什么的处理结果 (an urgent task also needs its emergency
    record: --handled, or an outcome that says what was done)."""
    db = app.ready_db()
    with db.session() as s:
        t = s.get(Task, task_id)
        if t is None:
            raise UserError(f"没有编号为 {task_id} 的任务 (no task {task_id})")
        try:  # any error below rolls the whole close back
            _, care = close_task(s, t, actor=actor, outcome=outcome, description=description, in_person=in_person,
                                 satisfaction=satisfaction, provider_id=provider_id, record_care=not no_care_record)
            handling = _handling(app.settings, t, handled, f"{outcome} {description or ''}")
            workforce.record_service(t, minutes)
            if handling:
                emergency.record(s, t, actions=handling, note=outcome, recorded_by=actor, handled_at=t.closed_at,
                                 handler_id=provider_id)
        except (TaskStateError, ValueError) as exc:
            raise UserError(str(exc)) from exc
        seq = care.seq if care else None
    click.echo(f"任务 #{task_id} 已完成" + (f"，关爱服务记录第 {seq} 次" if seq else "")
               + ("，处置记录已存档" if handling else ""))


def _handling(settings, task: Task, handled: tuple[str, ...], text: str) -> list | None:
    """The emergency record's actions of an urgent task (ValueError when it has none)."""
    if not emergency.required(task):
        return None
    if handled:
        # a bare HH:MM is on the local day of the emergency (the task's creation)
        return emergency.parse_actions(handled, settings, plan.local_today(settings, task.created_at or utcnow()))
    return emergency.actions_for_close(None, text)


# ---- campaigns --------------------------------------------------------------------------------
@click.group("campaign")
def campaign_group() -> None:
    """专项关爱行动 (care campaigns).

    在一个地区提高问候频率，每次问候播报安全提示 (raise the call frequency in an area and read a safety
    message in each check-in)."""


@campaign_group.command("start")
@area_option(required=True)
@click.option("--reason", required=True, help="原因：高温、寒潮、暴雨、大风、大雪、节日、疫情…… (reason)")
@date_option("--until", "until", required=True, what="结束日期", english="last day, inclusive")
@date_option("--from", "starts", what="开始日期", english="first day; default: today")
@click.option("--every", "frequency_days", type=click.IntRange(1, 30), default=1, show_default=True,
              help="每几天打一次电话 (call every N days)")
@click.option("--message", default=None, help="每次问候时播报的安全提示，默认按原因 (safety message; default: by reason)")
@json_option()
@pass_app
def campaign_start(app, area, reason, until, starts, frequency_days, message, as_json) -> None:
    """开始专项行动 (start a campaign)."""
    today = plan.local_today(app.settings, utcnow())
    start_day = _date(starts, "--from") if starts else today
    end_day = _date(until, "--until")
    if end_day < start_day:
        raise UserError(f"结束日期 {end_day} 早于开始日期 {start_day} (--until is before --from)")
    area = area.strip().strip("/")
    if not area:
        raise UserError("请给出地区 --area，例如 兰考县/城关镇")
    db = app.ready_db()
    with db.session() as s:
        n = s.query(Elder).filter(*_area_filter(area)).count()
        if n == 0:
            raise UserError(f"地区「{area}」没有登记的老人 (no elders in this area; use 县/乡镇/村 as registered)")
        text = message or plan.CAMPAIGN_MESSAGES.get(reason, plan.DEFAULT_CAMPAIGN_MESSAGE)
        c = Campaign(area=area, reason=reason, message=text, frequency_days=frequency_days, starts_on=start_day,
                     until=end_day)
        s.add(c)
        s.flush()
        info = _campaign_dict(c, today) | {"elders": n}
    if as_json:
        echo_json(info)
    else:
        click.echo(f"专项行动 #{info['id']} 已开始：{area} {reason} {start_day} 至 {end_day}，"
                   f"{n} 位老人每 {frequency_days} 天问候一次。提示语：{text}")


def _area_filter(area: str):
    parts = [p for p in area.split("/") if p]
    cols = [Elder.county, Elder.township, Elder.village]
    return [c == p for c, p in zip(cols, parts)]


def _campaign_dict(c: Campaign, today: dt.date) -> dict:
    active = c.stopped_at is None and c.starts_on <= today <= c.until
    return {"id": c.id, "area": c.area, "reason": c.reason, "message": c.message, "frequency_days": c.frequency_days,
            "starts_on": c.starts_on.isoformat(), "until": c.until.isoformat(),
            "stopped_at": c.stopped_at.isoformat() if c.stopped_at else None, "active": active}


@campaign_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="包括已结束和已停止的 (also ended and stopped ones)")
@json_option()
@pass_app
def campaign_list(app, show_all: bool, as_json: bool) -> None:
    """列出专项行动 (list campaigns).

    默认只列进行中和未开始的 (active and upcoming ones by default)."""
    today = plan.local_today(app.settings, utcnow())
    db = app.ready_db()
    with db.session() as s:
        rows = [_campaign_dict(c, today) for c in s.scalars(select(Campaign).order_by(Campaign.id))]
    if not show_all:
        rows = [r for r in rows if r["stopped_at"] is None and r["until"] >= today.isoformat()]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("没有进行中的专项行动 (no campaigns)")
    for r in rows:
        state = "进行中" if r["active"] else ("已停止" if r["stopped_at"] else ("未开始" if r["starts_on"] > today.isoformat() else "已结束"))
        click.echo(f"#{r['id']} {state} {r['area']} {r['reason']} {r['starts_on']}~{r['until']} 每{r['frequency_days']}天  {r['message']}")


@campaign_group.command("stop")
@click.argument("campaign_id", type=int)
@pass_app
def campaign_stop(app, campaign_id: int) -> None:
    """立即停止专项行动 (stop a campaign now)."""
    db = app.ready_db()
    with db.session() as s:
        c = s.get(Campaign, campaign_id)
        if c is None:
            raise UserError(f"没有编号为 {campaign_id} 的专项行动 (no campaign {campaign_id})")
        if c.stopped_at is not None:
            raise UserError(f"专项行动 #{campaign_id} 已于 {c.stopped_at:%Y-%m-%d %H:%M} 停止 (already stopped)")
        c.stopped_at = utcnow()
    click.echo(f"专项行动 #{campaign_id} 已停止")


# ---- coverage and plan -------------------------------------------------------------------------
@click.command("coverage")
@month_option()
@area_option()
@click.option("--guard", is_flag=True, help="现在运行覆盖检查：给本月未探访的老人派上门任务 "
                                            "(run the coverage guard now: visit tasks for elders not visited)")
@json_option()
@pass_app
def coverage_cmd(app, month, area, guard, as_json) -> None:
    """各地区的月度覆盖 (monthly coverage per area).

    老人数、已探访、待上门、未覆盖 (elders, visited, pending in-person tasks, uncovered)."""
    now = utcnow()
    try:
        first = parse_month(month) if month else plan.local_today(app.settings, now).replace(day=1)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    db = app.ready_db()
    created = 0
    with db.session() as s:
        if guard:
            created = len(coverage_guard(s, app.settings, now=now))
        report = coverage_report(s, app.settings, month=first, area=area)
        audit(s, app.actor, "read", "coverage", report["month"])
    if guard:
        report["guard_tasks_created"] = created
    if as_json:
        echo_json(report)
        return
    click.echo(f"{report['month']} 月度覆盖 (coverage)")
    click.echo(f"{'地区':<24} {'老人':>4} {'已探访':>6} {'待上门':>6} {'未覆盖':>6}")
    for r in report["areas"]:
        click.echo(f"{r['area']:<24} {r['elders']:>4} {r['visited']:>6} {r['pending_tasks']:>6} {r['uncovered']:>6}")
    t = report["total"]
    click.echo(f"{'合计':<24} {t['elders']:>4} {t['visited']:>6} {t['pending_tasks']:>6} {t['uncovered']:>6}")
    if guard:
        click.echo(f"新派上门任务 {created} 个")


@click.command("plan")
@date_option("--date", "day", what="哪一天", english="the day; default: today")
@json_option()
@pass_app
def plan_cmd(app, day, as_json) -> None:
    """某一天的问候计划 (the check-in plan of a day).

    谁会接到电话、何时、为何，或为何不打；不做任何改动 (who is called, when and why, or why not;
    changes nothing)."""
    target = _date(day, "--date") if day else plan.local_today(app.settings, utcnow())
    db = app.ready_db()
    rows = []
    with db.session() as s:
        campaigns = plan.active_campaigns(s, target)
        for elder in s.scalars(select(Elder).order_by(Elder.id)):
            p = plan.plan_day(s, app.settings, elder, target, campaigns)
            rows.append({"elder_id": elder.id, "name": elder.name, "due": p.due, "reason": p.reason,
                         "first_call_local": p.first_call_local.isoformat(timespec="minutes") if p.first_call_local else None,
                         "channel": p.channel, "frequency_days": p.frequency_days, "safety_messages": list(p.messages)})
    if as_json:
        echo_json({"date": target.isoformat(), "elders": rows})
        return
    due = [r for r in rows if r["due"]]
    click.echo(f"{target} 计划问候 {len(due)} / {len(rows)} 位老人")
    for r in rows:
        when = r["first_call_local"][11:] if r["first_call_local"] else "  -  "
        click.echo(f"  {r['elder_id']:>5} {r['name']:<6} {'拨打' if r['due'] else '不打'} {when}  {r['reason']}")


# ---- simulate -----------------------------------------------------------------------------------
@click.group("simulate")
def simulate_group() -> None:
    """模拟运行 (simulations).

    在模拟时钟上运行真实的排程代码 (the real scheduling code on a simulated clock)."""


@simulate_group.command("month")
@click.option("--elders", type=click.IntRange(1, 5000), default=200, show_default=True,
              help="合成老人的人数 (how many synthetic elders)")
@click.option("--seed", type=int, default=1, show_default=True, help="随机种子 (random seed)")
@month_option()
@click.option("--tick", "tick_seconds", type=click.IntRange(60, 3600), default=600, show_default=True,
              help="定时任务两次运行之间的模拟秒数 (simulated seconds between ticks of the interval jobs)")
@click.option("--database-url", default=None,
              help="模拟用的空数据库，默认临时目录里的新 SQLite 文件 "
                   "(an EMPTY database; default: a new SQLite file in a temporary folder)")
@json_option()
@pass_app
def simulate_month_cmd(app, elders, seed, month, tick_seconds, database_url, as_json) -> None:
    """模拟一个月 (simulate a month).

    合成老人 N 位：覆盖、电话、重复拨打、静默时段拨打、任务、通知 (N synthetic elders: coverage,
    calls, duplicates, quiet-hour calls, tasks, notifications)."""
    from core.app import App
    from sim.month import simulate_month

    try:
        first = parse_month(month) if month else plan.local_today(app.settings, utcnow()).replace(day=1)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    settings = app.settings.model_copy(deep=True)
    tmp = None
    if database_url:
        settings.database.url = database_url
    else:
        tmp = tempfile.TemporaryDirectory(prefix="tanfang-sim-")
        settings.database.url = f"sqlite:///{Path(tmp.name) / 'simulation.db'}"
    sim_app = App(settings=settings, actor="simulator")
    try:
        if sim_app.db.is_initialised():
            with sim_app.db.session() as s:
                if s.scalar(select(Elder.id).limit(1)) is not None:
                    raise UserError("模拟需要一个空数据库 (the simulation database already has elders)")
        progress = None if as_json else (lambda d: click.echo(f"\r模拟中 simulating {d}", nl=False, err=True))
        result = simulate_month(sim_app, elders=elders, seed=seed, month=first, tick_seconds=tick_seconds,
                                progress=progress)
    finally:
        sim_app.close()
        if tmp is not None:
            tmp.cleanup()
    if as_json:
        echo_json(result)
        return
    click.echo("", err=True)
    _print_simulation(result)


def _print_simulation(r: dict) -> None:
    click.echo(f"模拟月份 {r['month']}  老人 {r['elders']} 位  (seed {r['seed']}, 用时 {r['wall_seconds']} 秒)")
    click.echo(f"覆盖：已探访 {r['visited']}，有待办上门任务 {r['with_open_visit_task']}，未覆盖 {r['uncovered']}")
    for a in r["coverage_by_area"]:
        click.echo(f"  {a['area']:<20} 老人 {a['elders']:>4} 已探访 {a['visited']:>4} 待上门 {a['pending_tasks']:>3} 未覆盖 {a['uncovered']:>3}")
    c = r["calls_per_elder"]
    click.echo(f"电话：{r['calls']} 次，接通 {r['calls_answered']} 次；每位老人 最少 {c['min']} / 平均 {c['mean']} / 最多 {c['max']}；"
               f"带安全提示 {r['calls_with_safety_message']} 次")
    click.echo(f"重复拨打 {r['duplicate_calls']} 次；静默时段拨打 {r['quiet_hour_calls']} 次")
    click.echo(f"紧急回答 {r['urgent_events']} 句，其中 1 分钟内已通知紧急联系人并建立 P1 任务的 {r['urgent_notified_within_1min']} 句；"
               f"超时上报的 P1 任务 {r['escalated_p1_tasks']} 个")
    click.echo(f"任务（按优先级）：{r['tasks_by_priority']}  （按类型）：{r['tasks_by_kind']}  （按状态）：{r['tasks_by_state']}")
    n = r["notifications"]
    click.echo(f"通知：共 {n['total']} 条，已发送 {n['sent']}，待发送 {n['pending']}，失败 {n['failed']}，重试后送达 {n['retried']}；"
               f"按对象 {n['by_recipient']}；按渠道 {n['by_channel']}")
    rs = r["restart"]
    if rs:
        click.echo(f"服务重启：{rs['at_local']}，任务库中的作业前后一致 {rs['jobs_in_store_before'] == rs['jobs_in_store_after']}，"
                   f"重启时中断的通话 {len(rs['lost_in_flight'])} 个")
    click.echo("结论：" + ("通过 ✓" if r["ok"] else "未通过 ✗"))


# ---- the scheduler process ----------------------------------------------------------------------
@click.group("scheduler")
def scheduler_group() -> None:
    """排程服务 (the scheduler).

    即 APScheduler 进程，每个部署一个 (the APScheduler process, one per deployment)."""


@scheduler_group.command("run")
@click.option("--console", "console", is_flag=True,
              help="通知打印到屏幕而不是发送 (print SMS/Telegram notifications instead of sending them)")
@click.option("--for", "seconds", type=float, default=None, help="运行若干秒后退出 (default: until Ctrl-C)")
@click.option("--tick", "tick_seconds", type=click.IntRange(5, 3600), default=60, show_default=True,
              help="定时任务的间隔秒数 (seconds between ticks of the interval jobs)")
@pass_app
def scheduler_run(app, console: bool, seconds: float | None, tick_seconds: int) -> None:
    """运行排程服务 (run the scheduler).

    排计划、经 Twilio 拨打、发通知、上报、覆盖检查 (plan, dial through Twilio, deliver notifications,
    escalate, guard coverage)."""
    import asyncio

    from core.channels import ConsoleChannel
    from scheduler.jobs import JobContext
    from scheduler.runner import SchedulerService
    from voice.twilio_client import TwilioNotConfigured

    try:
        placer = wiring.build_placer(app.settings)
    except TwilioNotConfigured as exc:
        raise UserError(str(exc)) from exc
    channels = {}
    if console:
        channels = {"sms": ConsoleChannel("sms", printer=click.echo),
                    "telegram": ConsoleChannel("telegram", printer=click.echo)}
    app.ready_db()
    ctx = JobContext(app=app, dialer=wiring.build_dialer(app, lines={"twilio": placer}), channels=channels)
    service = SchedulerService(ctx, tick_seconds=tick_seconds)

    async def main() -> list[str]:
        scheduler = await service.start()
        ids = [j.id for j in scheduler.get_jobs()]
        click.echo(f"排程服务已启动 scheduler running: {', '.join(ids)}" + ("" if channels else
                   "（本进程不发送通知：没有配置通知渠道 no notification channels in this process）"))
        try:
            if seconds is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(seconds)
        finally:
            service.stop()
        return ids

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        service.stop()
    click.echo("排程服务已停止 scheduler stopped")


def _tick_time(app, at: str | None) -> dt.datetime:
    """``--at``: an ISO time; without an offset it is local time (``app.timezone``). Naive UTC out."""
    if not at:
        return utcnow()
    try:
        when = dt.datetime.fromisoformat(at)
    except ValueError as exc:
        raise UserError(f"--at 时间格式应为 YYYY-MM-DDTHH:MM (bad time {at!r})") from exc
    if when.tzinfo is not None:
        return when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return plan.to_utc(app.settings, when)


async def _tick(app, now: dt.datetime, dial: bool) -> dict:
    """Every job once, with the dialer and channels this process can build from its settings."""
    from scheduler.jobs import JobContext, tick
    from tanfang.serve import _twilio_missing

    s = app.settings
    notes: dict[str, str] = {}
    dialer = None
    if dial and not _twilio_missing(s, public=True):
        dialer = wiring.build_dialer(app, lines={"twilio": wiring.build_placer(s)})
    elif dial:
        notes["dial"] = "未配置 Twilio，不拨打 (Twilio not configured: ended calls settled, nothing dialed)"
    application = wiring.build_telegram(app, updater=False) if s.secrets.telegram_bot_token else None
    channels = wiring.build_channels(app, application=application, sms=not _twilio_missing(s, public=False))
    try:
        result = await tick(JobContext(app=app, dialer=dialer, channels=channels, clock=lambda: now))
    finally:
        if application is not None:
            await application.bot.shutdown()
    result.update({f"{k}_note": v for k, v in notes.items()})
    return result


@scheduler_group.command("tick")
@click.option("--at", "at", default=None, metavar="TIME",
              help="按这个时间运行 (run as if it were TIME: YYYY-MM-DDTHH:MM local, or with an offset; default now)")
@click.option("--no-dial", is_flag=True, help="不拨打电话 (settle, recover, escalate and deliver, but place no calls)")
@json_option()
@pass_app
def scheduler_tick(app, at: str | None, no_dial: bool, as_json: bool) -> None:
    """每个排程任务运行一次 (run every scheduler job once).

    计划、恢复、拨号、上报、覆盖、发件箱 (plan, recovery sweep, dial, escalate, coverage, outbox).

    供 cron 和故障测试用：每个任务都是幂等的，与运行中的排程服务并行无害 (for cron and the fault tests:
    each job is idempotent, so a tick beside a running scheduler does no harm)."""
    import asyncio

    now = _tick_time(app, at)
    app.ready_db()
    result = asyncio.run(_tick(app, now, dial=not no_dial))
    if as_json:
        echo_json(result)
        return
    r = result
    click.echo(f"排程 tick @ {r['at']} UTC")
    click.echo(f"  计划 plan: 新排定 {r['plan']['planned']}")
    rc = r["recovery"]
    click.echo(f"  恢复 recovery: 结算中断通话 {rc['calls_settled']}，关闭探访 {rc['visits_closed']}，补评分 {rc['turns_graded']}")
    d = r["dial"]
    click.echo(f"  拨号 dial: 拨出 {d['placed']}，结算 {d['settled']}，取消 {d['cancelled']}" + (f"（{r['dial_note']}）" if r.get("dial_note") else ""))
    click.echo(f"  上报 escalate: 超时 {r['escalate']['overdue']}，未送达 {r['escalate']['undelivered']}")
    click.echo(f"  覆盖 coverage: 新任务 {r['coverage']['tasks']}")
    o = r["outbox"]
    click.echo(f"  通知 outbox: 发出 {o['sent']}（渠道 {', '.join(o['channels']) or '-'}），待发 {o.get('pending_total', 0)}，"
               f"失败 {o.get('failed_total', 0)}")


@scheduler_group.command("jobs")
@json_option()
@pass_app
def scheduler_jobs(app, as_json: bool) -> None:
    """任务库中的作业 (the jobs in the job store).

    运行中的排程服务将做什么、何时做 (what a running scheduler will do, and when)."""
    from sqlalchemy import inspect, text

    from scheduler.runner import JOB_TABLE

    db = app.ready_db()
    if JOB_TABLE not in inspect(db.engine).get_table_names():
        rows = []
    else:
        with db.engine.connect() as conn:
            rows = [{"id": r[0], "next_run_time": dt.datetime.fromtimestamp(r[1], dt.timezone.utc).isoformat()
                     if r[1] is not None else None}
                    for r in conn.execute(text(f"SELECT id, next_run_time FROM {JOB_TABLE} ORDER BY id"))]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("任务库为空：排程服务还没有运行过 (no jobs stored yet)")
    for r in rows:
        when = r["next_run_time"] and labels.local_text(
            app.settings, dt.datetime.fromisoformat(r["next_run_time"]).replace(tzinfo=None), "%Y-%m-%d %H:%M:%S")
        click.echo(f"{r['id']:<18} 下次运行 {when or '暂停'}")


def register(cli: click.Group) -> None:
    cli.add_command(scheduler_group)
    cli.add_command(tasks_group)
    cli.add_command(campaign_group)
    cli.add_command(coverage_cmd)
    cli.add_command(plan_cmd)
    cli.add_command(simulate_group)
