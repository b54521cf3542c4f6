"""The text messages Tanfang sends in mainland China, as templates filed for approval.

Mainland SMS providers (Alibaba Cloud Dysms, Tencent Cloud SMS) deliver only pre-approved
templates under an approved signature: the message is a template code plus variables, never free
text. This module owns the contract: each message *kind*, the variables it takes and the exact
wording to file (kept in ``core/sms_templates.yml``; ``docs/wecom-sms.md`` prints it).
Configuration maps each kind to the template code the provider gave it (``sms.templates``).
Core code that notifies by SMS puts
``template_payload(kind, **params)`` in the outbox payload; the SMS channel renders nothing itself.

Variable rules (Alibaba Cloud, "TemplateRule&TemplateContent参数填写示例",
https://help.aliyun.com/document_detail/2806243.html): notice-template variables are limited in
length (names, addresses and custom text 1-35 characters; phone numbers up to 15); the channel cuts
a longer value (``sms.param_max_chars``) instead of having the whole message refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class SmsTemplate:
    kind: str
    label: str  # what it is for (Chinese first)
    wording: str  # exactly as filed, ${var} placeholders; the signature 【...】 is added by the provider
    params: tuple[str, ...]


TEMPLATES_FILE = Path(__file__).with_name("sms_templates.yml")


def load_templates(path: Path = TEMPLATES_FILE) -> dict[str, SmsTemplate]:
    """The filed templates from their file; a template whose variables are not exactly its
    placeholders refuses the whole file (the provider would refuse every message sent with it)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: 应为 模板类型 → 模板 (a mapping of kinds to templates)")
    templates: dict[str, SmsTemplate] = {}
    for kind, spec in raw.items():
        try:
            t = SmsTemplate(kind, spec["label"], spec["wording"], tuple(spec["params"]))
        except (TypeError, KeyError) as exc:
            raise ValueError(f"{path} 模板 {kind}: 缺少 label/wording/params ({exc})") from exc
        placeholders = re.findall(r"\$\{(\w+)\}", t.wording)
        if sorted(placeholders) != sorted(t.params):
            raise ValueError(f"{path} 模板 {kind}: 变量 {list(t.params)} 与文字中的占位符 {placeholders} 不符 "
                             "(params must be exactly the wording's placeholders)")
        templates[kind] = t
    return templates


TEMPLATES: dict[str, SmsTemplate] = load_templates()


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
