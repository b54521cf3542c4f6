"""Every prompt text the service can say, with its template and a stable key (``tanfang prompts``).

Sources, read without running them:
* the dialog: ``dialogs/domain.yml`` responses, and the texts the custom actions send
  (``dispatcher.utter_message(text=...)`` in ``dialogs/actions/actions.py``, read with ``ast``:
  string constants, f-strings — their ``{expressions}`` become placeholders — and ``+`` joins of
  the module's own string constants; the module's string dictionaries such as ``URGENT_ADVICE``);
* the questions of the form (``core.questions``: the question and its keypad wording);
* the call session's own lines (``voice.session``) and the TwiML messages (``voice.twiml``, said by
  Twilio's ``<Say>``);
* campaign safety messages (``core.plan``).
"""

from __future__ import annotations

import ast
import csv
import io
from pathlib import Path

import yaml

from core.settings import REPO_ROOT, Settings
from voice.prompts import PromptLibrary, PromptTemplate, segments, text_key

ACTIONS = REPO_ROOT / "dialogs" / "actions" / "actions.py"
DOMAIN = REPO_ROOT / "dialogs" / "domain.yml"


def _constants(tree: ast.Module) -> dict[str, object]:
    out: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = _text(node.value, out)
            if value is not None:
                out[node.targets[0].id] = value
            elif isinstance(node.value, ast.Dict):
                values = [_text(v, out) for v in node.value.values]
                if values and all(isinstance(v, str) for v in values):
                    out[node.targets[0].id] = values
    return out


def _text(node: ast.AST, consts: dict[str, object]) -> str | None:
    """A text template from an expression, or None when it is not text."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.Name):
        value = consts.get(node.id)
        return value if isinstance(value, str) else None
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            else:
                inner = v.value if isinstance(v, ast.FormattedValue) else v
                known = _text(inner, consts) if isinstance(inner, ast.Name) else None
                parts.append(known if known is not None else "{" + ast.unparse(inner) + "}")
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left, consts), _text(node.right, consts)
        if left is None and right is None:
            return None
        return (left if left is not None else "{" + ast.unparse(node.left) + "}") + \
               (right if right is not None else "{" + ast.unparse(node.right) + "}")
    return None


def action_texts(path: Path = ACTIONS) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    consts = _constants(tree)
    texts: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "utter_message":
            for kw in node.keywords:
                if kw.arg == "text":
                    t = _text(kw.value, consts)
                    if t and t.strip("{}") and not (t.startswith("{") and t.endswith("}") and t.count("{") == 1):
                        texts.append(t)
    for value in consts.values():
        if isinstance(value, list):
            texts.extend(value)
    return list(dict.fromkeys(texts))


def catalog() -> list[PromptTemplate]:
    from core.plan import CAMPAIGN_MESSAGES, DEFAULT_CAMPAIGN_MESSAGE
    from core.questions import QUESTIONS
    from voice import session, twiml

    out: list[PromptTemplate] = []
    domain = yaml.safe_load(DOMAIN.read_text(encoding="utf-8")) or {}
    for name, variants in (domain.get("responses") or {}).items():
        for i, v in enumerate(variants or []):
            if v.get("text"):
                out.append(PromptTemplate(f"domain.{name}.{i}", v["text"], "dialogs/domain.yml"))
    for text in action_texts():
        out.append(PromptTemplate(text_key("actions", text), text, "dialogs/actions/actions.py"))
    for q in QUESTIONS:
        out.append(PromptTemplate(f"question.{q.slot}", q.question, "core/questions.py"))
        out.append(PromptTemplate(f"question.{q.slot}.yesno", q.yesno, "core/questions.py"))
    for name in ("NO_SPEECH_PROMPT", "GOODBYE_NO_SPEECH", "GOODBYE_FAULT"):
        out.append(PromptTemplate(f"session.{name}", getattr(session, name), "voice/session.py"))
    for name in ("MACHINE_MESSAGE", "SORRY_MESSAGE"):
        out.append(PromptTemplate(f"twiml.{name}", getattr(twiml, name), "voice/twiml.py (Twilio <Say>)"))
    for reason, text in CAMPAIGN_MESSAGES.items():
        out.append(PromptTemplate(text_key("campaign", reason), text, f"core/plan.py campaign {reason}"))
    out.append(PromptTemplate("campaign.default", DEFAULT_CAMPAIGN_MESSAGE, "core/plan.py"))
    seen, unique = set(), []
    for t in out:
        if t.template not in seen:
            seen.add(t.template)
            unique.append(t)
    return unique


def prompts_dir(settings: Settings) -> Path:
    return settings.voice.prompts_dir or settings.app.data_dir / "prompts"


def library(settings: Settings) -> PromptLibrary:
    return PromptLibrary(prompts_dir(settings), catalog())


def export_csv(lib: PromptLibrary) -> str:
    """One row per segment to record: key, text, template, source, has_audio."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["key", "text", "template", "source", "has_audio"])
    for t in sorted(lib.templates, key=lambda t: t.key):
        for seg in segments(t):
            writer.writerow([seg.key, seg.text, t.template, t.source, "yes" if lib.has_audio(seg.key) else "no"])
    return buf.getvalue()
