"""SQLAlchemy 2 models: every field of the record form (sections 一 to 六) and the working tables.

Enumerations are stored as short ASCII strings (portable between SQLite and PostgreSQL);
their Chinese labels live in :data:`LABELS` and, for section 五, in ``catalogue.yml``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    Time,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from data import call_status, sealed
from data.sealed import KeyedHash, Sealed, SealedJSON, SealedText

PHONE_LENGTH = 16  # E.164: "+" and at most 15 digits

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


# ---- enumerations ---------------------------------------------------------------------------
CATEGORIES = {  # elder attribute -> Chinese category name (服务对象)
    "living_alone": "独居", "empty_nest": "空巢", "left_behind": "留守",
    "disabled_care": "失能", "severely_disabled": "重残", "family_planning": "计划生育特殊家庭",
}
VISIT_METHODS = {"phone": "电话问候", "in_person": "上门探访", "internet_av": "互联网音(视)频探访",
                 "chat": "聊天消息", "other": "其他"}
VISIT_STATUSES = ("in_progress", "complete", "incomplete", "cancelled")
CHANNELS = {"phone": "电话", "telegram": "Telegram", "in_person": "上门"}
# how a visitor, family member or emergency contact is reached (each chooses one; urgent alerts
# fall back to SMS): core/routing.py
PERSON_CHANNELS = {"telegram": "Telegram", "wecom": "企业微信", "sms": "短信"}
VISITOR_ROLES = {
    "grid_worker": "网格员",
    "social_worker": "社会工作者",
    "volunteer": "志愿者",
    "family_doctor": "村医",  # key kept from before 豫民文〔2023〕165号 named the roles (家庭医生 is an alias)
    "property_staff": "物业人员",
    "elder_peer": "老年协会老伙伴",
    "civil_affairs": "民政工作人员",
    "supervisor": "主管",
    "other": "其他",
}
# the plan's own names and older labels of the same roles (data.repo.visitor_role accepts them)
ROLE_ALIASES = {"社工": "social_worker", "家庭医生": "family_doctor", "乡村医生": "family_doctor",
                "物业": "property_staff", "网格管理员": "grid_worker"}
# the five roles the plan counts, each in its own way (core/workforce.py): short names for reports
WORKFORCE_ROLES = {"grid_worker": "网格员", "social_worker": "社工", "volunteer": "志愿者",
                   "family_doctor": "村医", "property_staff": "物业"}
ASSISTING_UNITS = {
    "party_government": "党政机关、群团组织",
    "township_village": "乡镇(街道)、村(居)民委员会",
    "enterprise": "企业",
    "social_org": "社会组织",
    "social_worker": "专业社会工作者",
    "volunteer": "志愿者",
    "other": "其他",
}
TASK_STATES = ("open", "acknowledged", "in_progress", "done", "cancelled")
OPEN_TASK_STATES = ("open", "acknowledged", "in_progress")
TASK_KINDS = {
    "urgent": "紧急处置",
    "concern": "关注跟进",
    "callback": "回拨电话",
    "visit": "上门探访",
    "contact_family": "联系家属",
    "coverage": "月度覆盖上门",
    "referral": "服务转介",
}
CALL_STATUSES = call_status.ALL
CALL_DIRECTIONS = {"outbound": "外呼", "inbound": "来电"}
# who called the service number (voice/inbound.py): known by caller ID, or not
CALLER_KINDS = {"elder": "老人本人", "emergency_contact": "紧急联系人", "family": "家属", "visitor": "探访人员",
                "unknown": "未登记号码", "anonymous": "未显示号码"}
# what became of a call-in (core/inbound.py)
INBOUND_OUTCOMES = {"urgent": "紧急处置（P1）", "callback": "回电任务", "duty_callback": "值班回电",
                    "in_progress": "通话中"}
# a follow-up question about an open concern (core/memory.py): what the answer did to the concern's task
FOLLOWUP_ACTIONS = {"closed": "已结案", "flagged": "待探访员确认", "open": "仍需跟进", "unclear": "没听明白"}
RISKS = ("none", "concern", "urgent")
SATISFACTION = {"satisfied": "满意", "fairly_satisfied": "基本满意", "dissatisfied": "不满意"}
OUTBOX_STATES = ("pending", "sent", "failed")
SEXES = {"M": "男", "F": "女"}
LABELS = {
    "category": CATEGORIES,
    "method": VISIT_METHODS,
    "channel": CHANNELS,
    "role": VISITOR_ROLES,
    "assisting_unit": ASSISTING_UNITS,
    "task_kind": TASK_KINDS,
    "satisfaction": SATISFACTION,
    "sex": SEXES,
}


def _in(column: str, values) -> CheckConstraint:
    quoted = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=f"{column}_valid")


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime, default=utcnow, onupdate=utcnow, server_default=func.now()
    )


# ---- section 一: the elder ------------------------------------------------------------------
class Elder(TimestampMixin, Base):
    __tablename__ = "elders"
    __table_args__ = (
        _in("preferred_channel", CHANNELS),
        _in("sex", SEXES),
        Index("ix_elders_area", "county", "township", "village"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # personal numbers are sealed (data/sealed.py); look-ups and uniqueness go through the hashes
    id_number: Mapped[str] = mapped_column(Sealed("id", 18))  # 公民身份号码
    id_number_hash: Mapped[str] = mapped_column(KeyedHash("id"), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    sex: Mapped[str] = mapped_column(String(1))
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    phone: Mapped[str | None] = mapped_column(Sealed("phone", PHONE_LENGTH))  # E.164
    phone_hash: Mapped[str | None] = mapped_column(KeyedHash("phone"), index=True)
    county: Mapped[str] = mapped_column(String(64))          # 县(市、区)
    township: Mapped[str] = mapped_column(String(64))        # 乡镇(街道)
    village: Mapped[str] = mapped_column(String(64))         # 村(居)
    address: Mapped[str | None] = mapped_column(String(200))  # 详细地址
    lives_at_registration: Mapped[bool] = mapped_column(Boolean, default=True)  # 是否居住在户籍所在地
    is_disabled: Mapped[bool] = mapped_column(Boolean, default=False)  # 是否残疾
    disability_cert_no: Mapped[str | None] = mapped_column(Sealed("text", 32))  # 残疾人证号 (ID number + 2)
    # categories (服务对象), one flag each
    living_alone: Mapped[bool] = mapped_column(Boolean, default=False)       # 独居
    empty_nest: Mapped[bool] = mapped_column(Boolean, default=False)         # 空巢
    left_behind: Mapped[bool] = mapped_column(Boolean, default=False)        # 留守
    disabled_care: Mapped[bool] = mapped_column(Boolean, default=False)      # 失能
    severely_disabled: Mapped[bool] = mapped_column(Boolean, default=False)  # 重残
    family_planning: Mapped[bool] = mapped_column(Boolean, default=False)    # 计划生育特殊家庭
    # consent and preferences
    consent_visit: Mapped[bool] = mapped_column(Boolean, default=True)          # 同意探访
    consent_share_family: Mapped[bool] = mapped_column(Boolean, default=False)  # 同意向家属共享
    preferred_call_start: Mapped[dt.time | None] = mapped_column(Time)
    preferred_call_end: Mapped[dt.time | None] = mapped_column(Time)
    preferred_channel: Mapped[str] = mapped_column(String(16), default="phone")
    telegram_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    paused_until: Mapped[dt.date | None] = mapped_column(Date)
    pause_reason: Mapped[str | None] = mapped_column(String(200))
    responsible_visitor_id: Mapped[int | None] = mapped_column(ForeignKey("visitors.id"))
    notes: Mapped[str | None] = mapped_column(Text)

    emergency_contacts: Mapped[list[EmergencyContact]] = relationship(
        back_populates="elder", cascade="all, delete-orphan", order_by="EmergencyContact.priority"
    )
    household_members: Mapped[list[HouseholdMember]] = relationship(
        back_populates="elder", cascade="all, delete-orphan", order_by="HouseholdMember.seq"
    )
    living_conditions: Mapped[LivingConditions | None] = relationship(
        back_populates="elder", cascade="all, delete-orphan", uselist=False
    )
    assistance: Mapped[list[Assistance]] = relationship(
        back_populates="elder", cascade="all, delete-orphan", order_by="Assistance.id"
    )
    family_members: Mapped[list[FamilyMember]] = relationship(
        back_populates="elder", cascade="all, delete-orphan"
    )
    visits: Mapped[list[Visit]] = relationship(back_populates="elder", order_by="Visit.seq")
    responsible_visitor: Mapped[Visitor | None] = relationship(foreign_keys=[responsible_visitor_id])

    @property
    def categories(self) -> list[str]:
        return [label for attr, label in CATEGORIES.items() if getattr(self, attr)]

    @property
    def area(self) -> tuple[str, str, str]:
        return (self.county, self.township, self.village)


class EmergencyContact(Base):
    __tablename__ = "emergency_contacts"
    __table_args__ = (_in("channel", PERSON_CHANNELS),)

    id: Mapped[int] = mapped_column(primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"), index=True)
    priority: Mapped[int] = mapped_column(Integer, default=1)  # 1 is called first
    name: Mapped[str] = mapped_column(String(64))
    relation: Mapped[str | None] = mapped_column(String(32))
    phone: Mapped[str] = mapped_column(Sealed("phone", PHONE_LENGTH))
    phone_hash: Mapped[str | None] = mapped_column(KeyedHash("phone"), index=True)
    telegram_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(16), default="sms", server_default="sms")
    wecom_user_id: Mapped[str | None] = mapped_column(String(64))  # 企业微信账号 (UserID)

    elder: Mapped[Elder] = relationship(back_populates="emergency_contacts")


# ---- section 二: household members ------------------------------------------------------------
class HouseholdMember(Base):
    __tablename__ = "household_members"
    __table_args__ = (UniqueConstraint("elder_id", "seq"), _in("sex", SEXES))

    id: Mapped[int] = mapped_column(primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # 序号; 1 = head of household (户主)
    name: Mapped[str] = mapped_column(String(64))
    sex: Mapped[str | None] = mapped_column(String(1))
    id_number: Mapped[str | None] = mapped_column(Sealed("id", 18))
    id_number_hash: Mapped[str | None] = mapped_column(KeyedHash("id"), index=True)
    relation_to_head: Mapped[str | None] = mapped_column(String(32))  # 与户主关系
    health: Mapped[str | None] = mapped_column(String(64))  # 健康状况
    on_dibao: Mapped[bool] = mapped_column(Boolean, default=False)  # 低保对象
    on_tekun: Mapped[bool] = mapped_column(Boolean, default=False)  # 特困人员

    elder: Mapped[Elder] = relationship(back_populates="household_members")


# ---- section 三: living conditions ------------------------------------------------------------
class LivingConditions(Base):
    __tablename__ = "living_conditions"

    id: Mapped[int] = mapped_column(primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"), unique=True)
    drinking_water_safe: Mapped[bool | None] = mapped_column(Boolean)  # 饮水是否安全
    electricity_safe: Mapped[bool | None] = mapped_column(Boolean)     # 用电是否安全
    housing_safe: Mapped[bool | None] = mapped_column(Boolean)         # 住房是否安全
    household_monthly_income: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))  # 家庭月收入(元)
    monthly_benefits: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))  # 月养老保险、社会救助和社会福利补贴

    elder: Mapped[Elder] = relationship(back_populates="living_conditions")


# ---- section 四: assistance received ----------------------------------------------------------
class Assistance(Base):
    __tablename__ = "assistance"
    __table_args__ = (_in("unit_type", ASSISTING_UNITS),)

    id: Mapped[int] = mapped_column(primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"), index=True)
    unit_type: Mapped[str] = mapped_column(String(32))  # 帮扶单位
    unit_name: Mapped[str | None] = mapped_column(String(100))
    responsible_person: Mapped[str | None] = mapped_column(String(64))  # 帮扶责任人
    measures: Mapped[str | None] = mapped_column(Text)  # 帮扶措施

    elder: Mapped[Elder] = relationship(back_populates="assistance")


# ---- people who visit, and families -----------------------------------------------------------
class Visitor(TimestampMixin, Base):
    __tablename__ = "visitors"
    __table_args__ = (_in("role", VISITOR_ROLES), _in("channel", PERSON_CHANNELS))

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str | None] = mapped_column(Sealed("phone", PHONE_LENGTH))
    phone_hash: Mapped[str | None] = mapped_column(KeyedHash("phone"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    county: Mapped[str | None] = mapped_column(String(64))  # area: empty = every unit below
    township: Mapped[str | None] = mapped_column(String(64))
    village: Mapped[str | None] = mapped_column(String(64))
    supervisor_id: Mapped[int | None] = mapped_column(ForeignKey("visitors.id"))
    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    telegram_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    channel: Mapped[str] = mapped_column(String(16), default="telegram", server_default="telegram")
    wecom_user_id: Mapped[str | None] = mapped_column(String(64), unique=True)  # 企业微信账号 (UserID)

    supervisor: Mapped[Visitor | None] = relationship(remote_side=[id])


class FamilyMember(TimestampMixin, Base):
    __tablename__ = "family_members"
    __table_args__ = (_in("channel", PERSON_CHANNELS),)

    id: Mapped[int] = mapped_column(primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    relation: Mapped[str | None] = mapped_column(String(32))
    phone: Mapped[str | None] = mapped_column(Sealed("phone", PHONE_LENGTH))
    phone_hash: Mapped[str | None] = mapped_column(KeyedHash("phone"), index=True)
    city: Mapped[str | None] = mapped_column(String(64))
    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger)
    telegram_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    last_contact_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # last call/visit to the parent
    channel: Mapped[str] = mapped_column(String(16), default="telegram", server_default="telegram")
    wecom_user_id: Mapped[str | None] = mapped_column(String(64))  # 企业微信账号 (UserID)

    elder: Mapped[Elder] = relationship(back_populates="family_members")


# ---- Telegram: invite codes, join failures, processed updates (bot/invites.py, bot/updates.py) ------
class TelegramInvite(Base):
    """An invite code for one visitor or one family member: only its hash is kept; it expires and is
    used once (``used_at``); issuing a new code for the same person revokes the old one."""

    __tablename__ = "telegram_invites"
    __table_args__ = (CheckConstraint("(visitor_id IS NULL) <> (family_member_id IS NULL)", name="one_holder"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    visitor_id: Mapped[int | None] = mapped_column(ForeignKey("visitors.id", ondelete="CASCADE"), index=True)
    family_member_id: Mapped[int | None] = mapped_column(ForeignKey("family_members.id", ondelete="CASCADE"),
                                                         index=True)
    issued_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    used_by_user_id: Mapped[int | None] = mapped_column(BigInteger)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class TelegramJoinFailure(Base):
    """A /start with a code that did not work, per chat: what the join rate limit counts."""

    __tablename__ = "telegram_join_failures"
    __table_args__ = (Index("ix_telegram_join_failures_chat_at", "chat_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(String(16))  # unknown | expired | used | revoked | inactive | consent


class TelegramUpdate(Base):
    """A Telegram update this bot took (``claimed_at``) and finished (``done_at``): a repeated
    delivery of the same ``update_id`` is dropped. Kept ``telegram.update_dedupe_hours``."""

    __tablename__ = "telegram_updates"

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    claimed_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    done_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


# ---- section 五: visits -------------------------------------------------------------------------
class Visit(TimestampMixin, Base):
    __tablename__ = "visits"
    __table_args__ = (
        UniqueConstraint("elder_id", "seq"),
        _in("method", VISIT_METHODS),
        _in("status", VISIT_STATUSES),
        _in("risk", RISKS),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # 第 N 次开展探访
    method: Mapped[str] = mapped_column(String(16))
    visit_date: Mapped[dt.date] = mapped_column(Date)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="in_progress")
    risk: Mapped[str] = mapped_column(String(8), default="none")  # worst grade of any turn
    visitor_id: Mapped[int | None] = mapped_column(ForeignKey("visitors.id"))
    respondent: Mapped[str | None] = mapped_column(String(32))  # elder | relative | other
    needs: Mapped[str | None] = mapped_column(Text)             # 老年人服务需求
    suggested_care: Mapped[str | None] = mapped_column(Text)    # 实施关爱服务建议
    entered_by: Mapped[str | None] = mapped_column(String(64))  # 数据录入人
    elder_signature: Mapped[str | None] = mapped_column(String(64))    # 被探访老年人签字
    visitor_signature: Mapped[str | None] = mapped_column(String(64))  # 探访人签字
    # the call-back promised during this visit ("工作人员会给您回电话"): made once, then kept here
    callback_task_id: Mapped[int | None] = mapped_column(
        ForeignKey("tasks.id", use_alter=True, name="fk_visits_callback_task_id_tasks"))

    elder: Mapped[Elder] = relationship(back_populates="visits")
    visitor: Mapped[Visitor | None] = relationship()
    answers: Mapped[list[VisitAnswer]] = relationship(
        back_populates="visit", cascade="all, delete-orphan", order_by="VisitAnswer.id"
    )
    turns: Mapped[list[VisitTurn]] = relationship(
        back_populates="visit", cascade="all, delete-orphan", order_by="VisitTurn.seq"
    )

    def answer(self, item_key: str) -> VisitAnswer | None:
        return next((a for a in self.answers if a.item_key == item_key), None)


class VisitAnswer(Base):
    """One section 五 item of one visit, on the item's scale (see ``catalogue.yml``)."""

    __tablename__ = "visit_answers"
    __table_args__ = (UniqueConstraint("visit_id", "item_key"), _in("risk", RISKS))

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"), index=True)
    item_key: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(200))  # 增加/减少 N 人; illness name
    risk: Mapped[str] = mapped_column(String(8), default="none")
    source_text: Mapped[str | None] = mapped_column(Text)  # what the elder said
    answered_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    visit: Mapped[Visit] = relationship(back_populates="answers")


class VisitTurn(Base):
    """Every prompt and every utterance of a check-in, written as it happens."""

    __tablename__ = "visit_turns"
    __table_args__ = (UniqueConstraint("visit_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    speaker: Mapped[str] = mapped_column(String(8))  # bot | elder
    text: Mapped[str] = mapped_column(Text)
    intent: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[float | None] = mapped_column(Float)
    risk: Mapped[str | None] = mapped_column(String(8))
    dimension: Mapped[str | None] = mapped_column(String(16))
    reasons: Mapped[list | None] = mapped_column(JSON)
    asr_confidence: Mapped[float | None] = mapped_column(Float)

    visit: Mapped[Visit] = relationship(back_populates="turns")


# ---- section 六: care services ------------------------------------------------------------------
class CareService(TimestampMixin, Base):
    __tablename__ = "care_services"
    __table_args__ = (UniqueConstraint("elder_id", "seq"), _in("satisfaction", SATISFACTION))

    id: Mapped[int] = mapped_column(primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id"), index=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    seq: Mapped[int] = mapped_column(Integer)  # 第 N 次开展关爱
    service_date: Mapped[dt.date] = mapped_column(Date)
    description: Mapped[str] = mapped_column(Text)  # 关爱服务情况
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("visitors.id"))
    provider_name: Mapped[str | None] = mapped_column(String(64))  # 服务人员签字(盖章)
    satisfaction: Mapped[str | None] = mapped_column(String(20))  # 老年人服务满意度评价
    in_person: Mapped[bool] = mapped_column(Boolean, default=False)


# ---- work: tasks, calls, notifications, audit ---------------------------------------------------
class Task(TimestampMixin, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        _in("state", TASK_STATES),
        _in("kind", TASK_KINDS),
        CheckConstraint("priority BETWEEN 1 AND 3", name="priority_valid"),
        Index("ix_tasks_open", "state", "priority", "deadline"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id"), index=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"))
    kind: Mapped[str] = mapped_column(String(20))
    priority: Mapped[int] = mapped_column(Integer)  # 1 urgent, 2 concern, 3 routine
    dimension: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="open")
    title: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str | None] = mapped_column(SealedText())  # carries phone numbers: sealed
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("visitors.id"))
    deadline: Mapped[dt.datetime | None] = mapped_column(DateTime)
    ack_deadline: Mapped[dt.datetime | None] = mapped_column(DateTime)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    merged_count: Mapped[int] = mapped_column(Integer, default=1)  # repeated concerns merged in
    outcome: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    service_minutes: Mapped[int | None] = mapped_column(Integer)  # time given (arrival -> done, or entered)

    elder: Mapped[Elder] = relationship()
    assignee: Mapped[Visitor | None] = relationship()
    events: Mapped[list[TaskEvent]] = relationship(
        back_populates="task", cascade="all, delete-orphan", order_by="TaskEvent.id"
    )


class TaskEvent(Base):
    __tablename__ = "task_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))  # system | visitor:<id> | staff:<name>
    action: Mapped[str] = mapped_column(String(32))  # created, acknowledged, merged, reassigned, ...
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)

    task: Mapped[Task] = relationship(back_populates="events")


class CallAttempt(TimestampMixin, Base):
    __tablename__ = "call_attempts"
    __table_args__ = (
        _in("status", CALL_STATUSES),
        _in("direction", CALL_DIRECTIONS),
        UniqueConstraint("slot_key"),  # one attempt per planned slot: a restart cannot duplicate it
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id"), index=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"))
    channel: Mapped[str] = mapped_column(String(16), default="phone")
    slot_key: Mapped[str] = mapped_column(String(100))  # e.g. elder:12:2026-11-28:1
    attempt_no: Mapped[int] = mapped_column(Integer, default=1)  # of this day
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    provider_sid: Mapped[str | None] = mapped_column(String(64), index=True)  # Twilio CallSid
    scheduled_for: Mapped[dt.datetime | None] = mapped_column(DateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    answered_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    answered_by: Mapped[str | None] = mapped_column(String(32))  # human | machine_start | ...
    reason: Mapped[str | None] = mapped_column(String(200))
    settled_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # outcome processed by the scheduler
    meta: Mapped[dict | None] = mapped_column(JSON)  # why this call: {"reason": "device_alert", "opening": ...}
    # outbound: the service rang the elder; inbound: the elder called the service number (InboundCall)
    direction: Mapped[str] = mapped_column(String(8), default="outbound", server_default="outbound")
    # refreshed by the process running the live call; a stale one means that process died
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Campaign(TimestampMixin, Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    area: Mapped[str] = mapped_column(String(200))  # 县/乡镇/村, a prefix: 兰考县 or 兰考县/城关镇
    reason: Mapped[str] = mapped_column(String(32))  # 高温 寒潮 暴雨 节日 ...
    message: Mapped[str | None] = mapped_column(Text)  # safety knowledge read out in each check-in
    frequency_days: Mapped[int] = mapped_column(Integer, default=1)
    starts_on: Mapped[dt.date] = mapped_column(Date)
    until: Mapped[dt.date] = mapped_column(Date)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class OutboxMessage(Base):
    """A notification, written in the same transaction as its event, delivered with retries."""

    __tablename__ = "outbox"
    __table_args__ = (_in("state", OUTBOX_STATES), Index("ix_outbox_due", "state", "next_attempt_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    channel: Mapped[str] = mapped_column(String(16))  # telegram | wecom | sms | console
    recipient: Mapped[str] = mapped_column(Sealed("text", 64))  # chat id or E.164 phone number: sealed
    recipient_kind: Mapped[str | None] = mapped_column(String(32))  # visitor | emergency_contact | family
    body: Mapped[str] = mapped_column(SealedText())  # carries names and phone numbers: sealed
    payload: Mapped[dict | None] = mapped_column(JSON)  # task card actions, who it is for (never personal data)
    # the SMS template {"kind", "params"} (core.sms_templates): its variables are names, phone
    # numbers and what the elder said, so sealed like the body
    template: Mapped[dict | None] = mapped_column(SealedJSON())
    elder_id: Mapped[int | None] = mapped_column(ForeignKey("elders.id"))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class CallbackReceipt(Base):
    """A signed callback already accepted (a WeCom MsgId, or its nonce): the same one again is a
    replay and is refused. Kept in the database so that a restart does not reopen the window."""

    __tablename__ = "callback_receipts"
    __table_args__ = (UniqueConstraint("channel", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))  # wecom
    key: Mapped[str] = mapped_column(String(128))  # msg:<MsgId> | nonce:<timestamp>:<nonce>
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class ChatState(Base):
    """Where a multi-step chat exchange stands for one user of a channel (e.g. closing a task in
    WeCom: the description typed, the satisfaction still to pick). One row per user."""

    __tablename__ = "chat_states"
    __table_args__ = (UniqueConstraint("channel", "user_ref"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    user_ref: Mapped[str] = mapped_column(String(64))  # the channel's user id (WeCom UserID)
    state: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))  # cli:<user> | visitor:<id> | family:<id> | staff:<name> | system
    action: Mapped[str] = mapped_column(String(32))  # read | read_sensitive | create | update | import | export
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)


# ---- staff dashboard users (core/auth.py) ---------------------------------------------------------
STAFF_ROLES = {"province": "省级", "county": "县级", "township": "乡镇(街道)", "village": "村(居)"}


class StaffUser(TimestampMixin, Base):
    """A civil-affairs staff login of the dashboard, scoped to an area at the level of its role."""

    __tablename__ = "staff_users"
    __table_args__ = (_in("role", STAFF_ROLES),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))  # scrypt$n$r$p$salt$hash
    role: Mapped[str] = mapped_column(String(16))
    county: Mapped[str | None] = mapped_column(String(64))
    township: Mapped[str | None] = mapped_column(String(64))
    village: Mapped[str | None] = mapped_column(String(64))
    can_see_sensitive: Mapped[bool] = mapped_column(Boolean, default=False)  # ID numbers, transcripts
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class StaffSession(Base):
    """A dashboard login (web/security, issue #14.20): the cookie holds a random token, the table only
    its SHA-256. A session is valid while not revoked and not expired; logout revokes it, a
    password change revokes every session of the user."""

    __tablename__ = "staff_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie token
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    address: Mapped[str | None] = mapped_column(String(64))  # client address at login (audit)


class LoginThrottle(Base):
    """Failed dashboard logins per key (``user:<name>`` or ``addr:<client address>``) in the current
    window, and the lockout they caused (issue #14.18). Kept in the database so that a restart or a
    second worker does not reset it."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[dt.datetime] = mapped_column(DateTime)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime)


# ---- the plan (豫民文〔2023〕165号): home devices, referrals, emergency records --------------------
DEVICE_KINDS = {"call_button": "呼叫按钮", "water_meter": "智能水表", "electricity_meter": "智能电表",
                "fall_detector": "跌倒检测器", "health_band": "健康手环"}
ALERT_LEVELS = {"urgent": "紧急", "concern": "关注", "info": "记录"}
ALERT_OUTCOMES = {"task": "已生成任务", "merged": "并入已有任务", "duplicate": "重复，已忽略",
                  "quietened": "频繁报警，已静默", "recorded": "仅记录"}
REFERRAL_STATUSES = {"submitted": "已提交", "accepted": "已接收", "served": "已服务", "closed": "已结案"}
# what was done in an emergency (处置记录): the structured list; free text goes beside it
HANDLING_ACTIONS = {
    "called_120": "拨打120急救", "called_110": "报警110", "called_119": "拨打119",
    "family_reached": "联系上家属", "neighbor_helped": "请邻居或村干部到场", "visited": "上门查看",
    "escorted_hospital": "送医或陪同就医", "repaired": "维修处理", "elder_safe": "确认老人平安",
    "false_alarm": "误报", "other": "其他",
}


class Device(TimestampMixin, Base):
    """A device in an elder's home (智能水表、呼叫按钮…): who made it, its id there, its rules."""

    __tablename__ = "devices"
    __table_args__ = (_in("kind", DEVICE_KINDS), UniqueConstraint("vendor", "device_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    vendor: Mapped[str] = mapped_column(String(64))  # = the alert source name of its signed route
    device_id: Mapped[str] = mapped_column(String(64))  # the vendor's id of the device
    rules: Mapped[dict | None] = mapped_column(JSON)  # event -> rule overriding alerts.rules of config.yml
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    installed_on: Mapped[dt.date | None] = mapped_column(Date)
    note: Mapped[str | None] = mapped_column(String(200))

    elder: Mapped[Elder] = relationship()


class DeviceEvent(Base):
    """Everything a device sent, kept with the elder's record, and what it led to."""

    __tablename__ = "device_events"
    __table_args__ = (
        _in("device_kind", DEVICE_KINDS), _in("level", ALERT_LEVELS), _in("outcome", ALERT_OUTCOMES),
        Index("ix_device_events_device", "elder_id", "device_kind", "device_ref", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"), index=True)
    device_pk: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(64))  # the signed route's source, or file:<name>
    device_kind: Mapped[str] = mapped_column(String(24))
    device_ref: Mapped[str | None] = mapped_column(String(64))  # the vendor's device id
    event: Mapped[str] = mapped_column(String(32))
    value: Mapped[float | None] = mapped_column(Float)  # hours without flow, beats a minute, ...
    label: Mapped[str | None] = mapped_column(String(100))  # what it meant, in Chinese (the rule's words)
    at: Mapped[dt.datetime] = mapped_column(DateTime)  # when the device saw it (UTC)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    level: Mapped[str] = mapped_column(String(8))
    outcome: Mapped[str] = mapped_column(String(12))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("call_attempts.id"))
    note: Mapped[str | None] = mapped_column(String(200))
    raw: Mapped[dict | None] = mapped_column(JSON)  # the event as it came


class Referral(TimestampMixin, Base):
    """需求转介: a need passed on to a service provider, a social worker or a benefits office."""

    __tablename__ = "referrals"
    __table_args__ = (_in("status", REFERRAL_STATUSES), Index("ix_referrals_open", "status", "submitted_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"))
    kind: Mapped[str] = mapped_column(String(32))  # a key of referrals.types in config.yml
    provider: Mapped[str] = mapped_column(String(100))
    need: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="submitted")
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    submitted_by: Mapped[str] = mapped_column(String(64))
    accepted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    accepted_by: Mapped[str | None] = mapped_column(String(64))
    served_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    served_by: Mapped[str | None] = mapped_column(String(64))
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    closed_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)

    elder: Mapped[Elder] = relationship()


class EmergencyRecord(TimestampMixin, Base):
    """处置记录: what was done about an urgent task, when and by whom (required to close a P1)."""

    __tablename__ = "emergency_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), unique=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id"), index=True)
    actions: Mapped[list] = mapped_column(JSON)  # [{"key": "called_120", "at": "2026-11-03T02:05:00" | null}]
    note: Mapped[str | None] = mapped_column(Text)
    handled_at: Mapped[dt.datetime] = mapped_column(DateTime)
    handler_id: Mapped[int | None] = mapped_column(ForeignKey("visitors.id"))
    handler_name: Mapped[str | None] = mapped_column(String(64))
    recorded_by: Mapped[str] = mapped_column(String(64))

    task: Mapped[Task] = relationship()
# ---- elders who call in (voice/inbound.py, core/inbound.py), memory between calls (core/memory.py) ---------
class InboundCall(Base):
    """Every call to the service number, known caller or not: who it was (by caller ID), what
    they pressed or said, and what it became (a P1 task, a call-back task, the duty visitor's
    call-back of an unknown number). A known elder's conversation also has its ``CallAttempt``
    (direction inbound) and ``Visit``; an unknown caller has neither: the call-back is kept here."""

    __tablename__ = "inbound_calls"
    __table_args__ = (_in("caller_kind", CALLER_KINDS), _in("outcome", INBOUND_OUTCOMES), _in("risk", RISKS))

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    line: Mapped[str] = mapped_column(String(16))  # twilio | sip
    call_id: Mapped[str] = mapped_column(String(64), index=True)  # Twilio CallSid, SIP Call-ID
    caller: Mapped[str | None] = mapped_column(Sealed("phone", PHONE_LENGTH))  # E.164; None: no caller ID
    caller_hash: Mapped[str | None] = mapped_column(KeyedHash("phone"), index=True)
    caller_kind: Mapped[str] = mapped_column(String(20))
    elder_id: Mapped[int | None] = mapped_column(ForeignKey("elders.id"), index=True)
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("call_attempts.id"))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"))
    pressed_help: Mapped[bool] = mapped_column(Boolean, default=False)  # 紧急情况请按1
    heard: Mapped[str | None] = mapped_column(SealedText())  # what an unknown caller said (no visit keeps it)
    risk: Mapped[str] = mapped_column(String(8), default="none")
    outcome: Mapped[str] = mapped_column(String(16), default="in_progress")
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))  # the P1 or call-back task (known elder)
    duty_visitor_id: Mapped[int | None] = mapped_column(ForeignKey("visitors.id"))  # unknown caller: who calls back
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    callback_done_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    callback_done_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)

    elder: Mapped[Elder | None] = relationship()
    duty_visitor: Mapped[Visitor | None] = relationship()


class VisitFollowup(Base):
    """A question about a concern still open from an earlier visit ("上次您说腿疼，现在好些了吗？"),
    asked at the start of a check-in, and what the answer did to the concern's task."""

    __tablename__ = "visit_followups"
    __table_args__ = (UniqueConstraint("visit_id", "seq"), _in("action", FOLLOWUP_ACTIONS))

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    seq: Mapped[int] = mapped_column(Integer)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)  # what the elder said
    resolved: Mapped[bool | None] = mapped_column(Boolean)  # None: not understood
    action: Mapped[str] = mapped_column(String(8))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    visit: Mapped[Visit] = relationship()


LABELS.update({"device_kind": DEVICE_KINDS, "alert_level": ALERT_LEVELS, "referral_status": REFERRAL_STATUSES,
               "handling": HANDLING_ACTIONS, "caller_kind": CALLER_KINDS, "inbound_outcome": INBOUND_OUTCOMES,
               "followup_action": FOLLOWUP_ACTIONS, "direction": CALL_DIRECTIONS})


# ---- sealed personal numbers: setting one normalises it and sets its hash --------------------------
for _attr, _purpose in ((Elder.id_number, "id"), (Elder.phone, "phone"), (HouseholdMember.id_number, "id"),
                        (EmergencyContact.phone, "phone"), (FamilyMember.phone, "phone"), (Visitor.phone, "phone"),
                        (InboundCall.caller, "phone")):
    sealed.pair(_attr, f"{_attr.key}_hash", _purpose)
