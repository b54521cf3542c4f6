"""The text messages Tanfang sends in mainland China, as templates filed for approval.

Mainland SMS providers (Alibaba Cloud Dysms, Tencent Cloud SMS) deliver only pre-approved
templates under an approved signature: the message is a template code plus variables, never free
text. This module owns the contract: each message *kind*, the variables it takes and the exact
wording to file (``docs/wecom-sms.md`` prints it). Configuration maps each kind to the template
code the provider gave it (``sms.templates``). Core code that notifies by SMS puts
``template_payload(kind, **params)`` in the outbox payload; the SMS channel renders nothing itself.

Variable rules (Alibaba Cloud, "TemplateRule&TemplateContent参数填写示例",
https://help.aliyun.com/document_detail/2806243.html): notice-template variables are limited in
length (names, addresses and custom text 1-35 characters; phone numbers up to 15); the channel cuts
a longer value (``sms.param_max_chars``) instead of having the whole message refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SmsTemplate:
    kind: str
    label: str  # what it is for (Chinese first)
    wording: str  # exactly as filed, ${var} placeholders; the signature 【...】 is added by the provider
    params: tuple[str, ...]


TEMPLATES: dict[str, SmsTemplate] = {t.kind: t for t in (
    SmsTemplate("urgent", "紧急情况通知紧急联系人（老人说了摔倒、煤气等）",
                "紧急：${name}在问候电话里说“${said}”，可能需要帮助。请马上联系老人（${phone}），"
                "必要时拨打120。负责探访员：${visitor}。",
                ("name", "said", "phone", "visitor")),
    SmsTemplate("device_alert", "家中设备紧急报警，通知紧急联系人（呼叫按钮、跌倒报警等，core/alerts.py）",
                "紧急：${name}家的${device}在${time}报警（${what}），可能需要帮助。我们正在给老人打电话。"
                "请马上联系老人（${phone}），必要时拨打120。负责探访员：${visitor}。",
                ("name", "device", "time", "what", "phone", "visitor")),
    SmsTemplate("no_answer", "问候电话多次未接通，请家属联系老人",
                "${date}给${name}打了${count}次问候电话都没有接通。请您方便时联系一下老人，或告诉网格员老人是否外出。",
                ("date", "name", "count")),
    SmsTemplate("visitor_task", "探访员的任务通知：没有企业微信/Telegram，或紧急任务的聊天消息发不出去时",
                "您有一个${priority}任务${task}：${name}，${summary}。请打开企业微信或Telegram处理。",
                ("priority", "task", "name", "summary")),
    SmsTemplate("escalation", "紧急任务超时无人确认，上报主管",
                "上报：紧急任务${task}（${name}）自${since}起无人确认，请立即处理或改派。",
                ("task", "name", "since")),
    SmsTemplate("family_digest", "每周向家属发送的小结",
                "${name}本周问候${visits}次，${status}，关爱服务${cares}次。",
                ("name", "visits", "status", "cares")),
    SmsTemplate("supervisor_digest", "每天向主管发送的待办小结（core/reminders.py）",
                "${name}您好，您负责的任务有${open}件未完成，其中${overdue}件已逾期，${exhausted}件紧急任务多次上报仍无人确认。"
                "请打开企业微信或工作台处理。",
                ("name", "open", "overdue", "exhausted")),
    SmsTemplate("pause_notice", "家属暂停问候电话时告诉负责的探访员",
                "${name}的家属（${by}）暂停了问候电话：${dates}，原因：${reason}。暂停期间不打问候电话，需要时请上门看看。",
                ("name", "by", "dates", "reason")),
    SmsTemplate("duty_callback", "未登记的号码打来探访服务电话，请值班人员回电（core/inbound.py）",
                "值班回电：${time}有人打来探访服务电话（号码${phone}），说“${said}”。请${act}回电，了解是哪位老人、需要什么帮助。",
                ("time", "phone", "said", "act")),
)}


class TemplateError(ValueError):
    """A message kind or its variables do not match a filed template (Chinese first)."""


def template_payload(kind: str, **params: Any) -> dict[str, Any]:
    """The outbox payload part an SMS channel sends: ``{"template": {"kind", "params"}}``.
    Every variable of the template must be given (an approved template cannot go out half-filled)."""
    spec = TEMPLATES.get(kind)
    if spec is None:
        raise TemplateError(f"没有这种短信模板 {kind!r} (unknown SMS template; one of {', '.join(TEMPLATES)})")
    missing = [p for p in spec.params if params.get(p) in (None, "")]
    extra = [p for p in params if p not in spec.params]
    if missing or extra:
        raise TemplateError(f"短信模板 {kind} 的变量不符 (template variables): 缺少 {missing}，多余 {extra}")
    return {"template": {"kind": kind, "params": {p: str(params[p]) for p in spec.params}}}


def render(kind: str, params: dict[str, Any]) -> str:
    """The text a handset shows for these variables (stand-ins, logs, the demo)."""
    text = TEMPLATES[kind].wording
    for name, value in params.items():
        text = text.replace("${" + name + "}", str(value))
    return text
