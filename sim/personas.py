"""Scripted elders (``data/samples/personas.yml``), one kind for the demo day, the month
simulation and the tests.

A persona decides whether a call is answered (which attempt of the day, who picks up) and what the
elder says to each question. It answers *what was asked*: the dialog's expected slot
(``DialogReply.expects``, e.g. ``health_mobility``) or, before the forms start, the wording of the
identity and consent questions. On the simulated line the answer is spoken by the synthesizer, so
the service still has to hear it (Vosk) and understand it (Rasa).

An event persona (falls, smells gas) has its event on ``event_day`` of a simulated month: before
that, and in any later visit, it answers as a fine elder would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PERSONAS_FILE = Path(__file__).resolve().parent.parent / "data" / "samples" / "personas.yml"

# the dialog's slot -> the persona's answer keys, most specific first
SLOT_KEYS: dict[str, tuple[str, ...]] = {
    "health_mobility": ("mobility", "health"),
    "health_illness": ("illness", "health"),
    "health_mental": ("mental", "health"),
    "economy_living": ("economy",),
    "economy_benefits": ("benefits", "economy"),
    "family_children": ("family",),
    "safety_house": ("house", "safety"),
    "safety_utilities": ("utilities", "safety"),
    "safety_gas_heating": ("gas", "safety"),
    "needs_daily_care": ("needs",),
}


class PersonaError(ValueError):
    pass


# what an event persona says before (and after) its event
FINE_ANSWERS = {"health": "身体还中", "illness": "身体还中", "mobility": "腿脚还中", "family": "孩子们常打电话",
                "safety": "都挺安全", "gas": "都挺安全", "economy": "够用", "needs": "不用帮忙"}


@dataclass
class Persona:
    key: str
    label: str
    answer_on_attempt: int  # 0: never answers; n: the n-th call of the day is answered
    respondent: str = "elder"  # elder | relative
    opening: str = ""
    answers: dict[str, str] = field(default_factory=dict)
    event_day: int | None = None  # fell / gas: it happens on the first call on or after this day
    event_visit: int | None = None  # the visit in which the event was told

    def picks_up(self, nth_call: int) -> bool:
        return self.answer_on_attempt > 0 and nth_call >= self.answer_on_attempt

    def before_event(self, day: int | None, visit_id: int | None) -> bool:
        if self.event_day is None or day is None:
            return False
        return day < self.event_day or self.event_visit not in (None, visit_id)

    def answer(self, expects: str | None, prompt: str = "", *, day: int | None = None,
               visit_id: int | None = None) -> str:
        """What the elder says to a prompt (the bot's last words) that expects ``expects``."""
        if self.before_event(day, visit_id):
            keys = SLOT_KEYS.get(expects or "", ())
            return next((FINE_ANSWERS[k] for k in keys if k in FINE_ANSWERS), "挺好的")
        if expects in SLOT_KEYS:
            for key in SLOT_KEYS[expects]:
                if key in self.answers:
                    return self.answers[key]
            return self.answers.get("default", "挺好的")
        if "请问是" in prompt or "是请按1" in prompt and "方便" not in prompt:
            # the identity question: the elder confirms; a relative says who they are
            return self.opening or ("是我" if self.respondent == "elder" else "我是他家里人")
        if "方便" in prompt:
            return self.answers.get("consent", "方便，你说吧")
        return self.answers.get("default", "挺好的")


def load_personas(path: str | Path = PERSONAS_FILE) -> tuple[dict[str, Persona], list[str]]:
    """Personas by key, and the assignment cycle for the roster (by position)."""
    p = Path(path)
    if not p.is_file():
        raise PersonaError(f"找不到角色文件 (no personas file): {p}")
    raw: dict[str, Any] = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    personas: dict[str, Persona] = {}
    for key, v in (raw.get("personas") or {}).items():
        try:
            personas[key] = Persona(key=key, label=str(v.get("label", key)),
                                    answer_on_attempt=int(v.get("answer_on_attempt", 1)),
                                    respondent=str(v.get("respondent", "elder")), opening=str(v.get("opening", "")),
                                    answers={str(k): str(t) for k, t in (v.get("answers") or {}).items()})
        except (TypeError, ValueError, AttributeError) as exc:
            raise PersonaError(f"角色 {key} 格式不对 (bad persona): {exc}") from exc
    cycle = [str(k) for k in raw.get("assignment") or []]
    unknown = [k for k in cycle if k not in personas]
    if not personas or not cycle or unknown:
        raise PersonaError(f"角色文件需要 personas 和 assignment（未知角色: {unknown}）: {p}")
    return personas, cycle
