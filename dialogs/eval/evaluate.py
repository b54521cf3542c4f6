"""Evaluate the trained check-in model on the held-out set (``heldout.yml``, never trained on).

Run with the Rasa environment's Python (it loads the model in-process):

    ~/.cache/tanfang/rasa-env/<hash>/bin/python dialogs/eval/evaluate.py MODEL.tar.gz [--json out.json]

Reports intent F1 (NLU alone), and on the combined grade (``core.grading.grade_turn`` = rules OR
NLU): urgent recall, concern recall, false alarms on fine answers. ``--rules-only`` grades with
``parse=None`` (what the phone line does when Rasa is down).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
HELDOUT = Path(__file__).with_name("heldout.yml")
DEFAULT_EXPECTS = "health_mobility"


def load_heldout(path: Path = HELDOUT) -> list[dict]:
    """[{text, intent, kind, expects}] from the held-out file."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    rows = []
    for kind, intents in raw.items():
        for intent, texts in intents.items():
            for t in texts:
                text, _, expects = str(t).partition("|")
                rows.append({"text": text, "intent": intent, "kind": kind,
                             "expects": expects or (DEFAULT_EXPECTS if kind in ("fine", "concern") else None)})
    return rows


def score(rows: list[dict], parses: list | None) -> dict:
    from core.grading import grade_turn

    grades = [grade_turn(r["text"], parses[i] if parses else None, r["expects"]) for i, r in enumerate(rows)]
    def frac(kind, ok):
        sel = [(r, g) for r, g in zip(rows, grades) if r["kind"] == kind]
        hits = [r["text"] for r, g in sel if ok(g)]
        return len(hits) / len(sel), [r["text"] for r, g in sel if not ok(g)]
    urgent, missed_u = frac("urgent", lambda g: g.risk == "urgent")
    concern, missed_c = frac("concern", lambda g: g.risk in ("concern", "urgent"))
    fine_ok, alarms = frac("fine", lambda g: g.risk == "none")
    return {"urgent_recall": urgent, "concern_recall": concern, "false_alarm_rate": 1 - fine_ok,
            "missed_urgent": missed_u, "missed_concern": missed_c, "false_alarms": alarms}


async def parse_all(model: str, texts: list[str]):
    from rasa.core.agent import Agent
    from core.ports import ParseResult

    agent = Agent.load(model)
    out = []
    for t in texts:
        p = await agent.parse_message(t)
        intent = p.get("intent") or {}
        out.append(ParseResult(text=t, intent=intent.get("name"), confidence=float(intent.get("confidence") or 0),
                               entities=p.get("entities") or []))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", help="trained model .tar.gz (omit with --rules-only)")
    ap.add_argument("--rules-only", action="store_true")
    ap.add_argument("--json", help="write the figures to this file")
    a = ap.parse_args(argv)
    rows = load_heldout()
    report: dict = {"examples": len(rows)}
    parses = None
    if not a.rules_only:
        from sklearn.metrics import f1_score

        parses = asyncio.run(parse_all(a.model, [r["text"] for r in rows]))
        gold = [r["intent"] for r in rows]
        pred = [p.intent for p in parses]
        report["intent_f1_weighted"] = f1_score(gold, pred, average="weighted", zero_division=0)
        report["intent_f1_macro"] = f1_score(gold, pred, average="macro", zero_division=0)
        report["intent_accuracy"] = sum(g == p for g, p in zip(gold, pred)) / len(gold)
        report["nlu_only_urgent_recall"] = sum(
            1 for r, p in zip(rows, parses) if r["kind"] == "urgent" and (p.intent or "").startswith("urgent_")
        ) / sum(1 for r in rows if r["kind"] == "urgent")
        report["intent_errors"] = [f"{r['text']}: {r['intent']} -> {p.intent}({p.confidence:.2f})"
                                   for r, p in zip(rows, parses) if r["intent"] != p.intent]
    report.update(score(rows, parses))
    print(json.dumps(report, ensure_ascii=False, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
