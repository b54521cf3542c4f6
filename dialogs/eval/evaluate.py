"""Evaluate the check-in model and the grading on the held-out sets (never trained on).

Three sets: ``heldout.yml`` (120 texts, written by the same hands as the training data),
``heldout_independent.yml`` (written from scratch in other voices, see its header) and
``heldout_blind.yml`` (a second such batch written after the rules were widened, never tuned on).
For each:

* intent F1 / accuracy of the NLU alone;
* urgent recall, concern recall and false alarms on fine answers, graded three ways:
  ``nlu`` (the NLU result alone, ``core.grading.nlu_grade``), ``rules`` (the safety rules alone,
  ``parse=None``: what runs when Rasa is down) and ``grade`` (``core.grading.grade_turn`` =
  rules OR NLU, what the service does).

Parses come from a running Rasa server (``--url http://127.0.0.1:5005``, any Python) or from a
model loaded in-process (``MODEL.tar.gz``, run with the Rasa environment's Python)::

    PYTHONPATH=$PWD .venv/bin/python dialogs/eval/evaluate.py --url http://127.0.0.1:27005 [--json out.json]
    ~/.cache/tanfang/rasa-env/<hash>/bin/python dialogs/eval/evaluate.py MODEL.tar.gz
    PYTHONPATH=$PWD .venv/bin/python dialogs/eval/evaluate.py --rules-only
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
INDEPENDENT = Path(__file__).with_name("heldout_independent.yml")
BLIND = Path(__file__).with_name("heldout_blind.yml")
DEFAULT_EXPECTS = "health_mobility"
KIND_OF_RISK = {"urgent": "urgent", "concern": "concern", "none": "fine"}


def load_heldout(path: Path = HELDOUT) -> list[dict]:
    """[{text, intent, kind, expects, dimension}] from the first held-out file (kind -> intent -> texts)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    rows = []
    for kind, intents in raw.items():
        for intent, texts in intents.items():
            for t in texts:
                text, _, expects = str(t).partition("|")
                rows.append({"text": text, "intent": intent, "kind": kind, "dimension": None,
                             "expects": expects or (DEFAULT_EXPECTS if kind in ("fine", "concern") else None)})
    return rows


def load_independent(path: Path = INDEPENDENT) -> list[dict]:
    """The same rows from the independent set (a list of labelled answers, see its header)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [{"text": str(a["text"]), "intent": a["intent"], "kind": KIND_OF_RISK[a["risk"]],
             "dimension": a.get("dimension"), "expects": a.get("asks"), "who": a.get("who")}
            for a in raw["answers"]]


def load_blind(path: Path = BLIND) -> list[dict]:
    """The blind batch: written after the rules were widened, evaluated once (see its header)."""
    return load_independent(path)


SETS = {"heldout": load_heldout, "independent": load_independent, "blind": load_blind}


def recalls(rows: list[dict], grades: list) -> dict:
    """Urgent recall, concern recall (urgent counts as caught), false alarms on fine answers, misses."""
    def frac(kind, ok):
        sel = [(r, g) for r, g in zip(rows, grades) if r["kind"] == kind]
        if not sel:
            return None, []
        return sum(1 for _, g in sel if ok(g)) / len(sel), [r["text"] for r, g in sel if not ok(g)]
    urgent, missed_u = frac("urgent", lambda g: g.risk == "urgent")
    concern, missed_c = frac("concern", lambda g: g.risk in ("concern", "urgent"))
    fine_ok, alarms = frac("fine", lambda g: g.risk == "none")
    return {"urgent_recall": urgent, "concern_recall": concern,
            "false_alarm_rate": None if fine_ok is None else 1 - fine_ok,
            "missed_urgent": missed_u, "missed_concern": missed_c, "false_alarms": alarms}


def score(rows: list[dict], parses: list | None, alternatives: list | None = None) -> dict:
    """Grade figures of one set: ``grade`` (rules OR NLU), ``rules`` and, with parses, ``nlu``."""
    from core.grading import grade_answer, nlu_grade

    alts = alternatives or [()] * len(rows)
    out = {"rules": recalls(rows, [grade_answer(r["text"], None, r["expects"], a) for r, a in zip(rows, alts)])}
    if parses is not None:
        out["nlu"] = recalls(rows, [nlu_grade(p, r["expects"]) for r, p in zip(rows, parses)])
        out["grade"] = recalls(rows, [grade_answer(r["text"], p, r["expects"], a)
                                      for r, p, a in zip(rows, parses, alts)])
    return out


def f1_scores(gold: list, pred: list) -> tuple[float, float]:
    """(weighted, macro) F1 over the labels of gold and prediction, as scikit-learn computes them
    with ``zero_division=0`` (kept here so the app's environment needs no scikit-learn)."""
    labels = sorted({*gold, *pred}, key=str)
    f1s, support = [], []
    for label in labels:
        tp = sum(1 for g, p in zip(gold, pred) if g == p == label)
        n_pred, n_gold = pred.count(label), gold.count(label)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
        support.append(n_gold)
    weighted = sum(f * n for f, n in zip(f1s, support)) / len(gold) if gold else 0.0
    return weighted, sum(f1s) / len(f1s) if f1s else 0.0


def intent_figures(rows: list[dict], parses: list) -> dict:
    gold = [r["intent"] for r in rows]
    pred = [p.intent for p in parses]
    weighted, macro = f1_scores(gold, pred)
    return {"intent_f1_weighted": weighted, "intent_f1_macro": macro,
            "intent_accuracy": sum(g == p for g, p in zip(gold, pred)) / len(gold),
            "intent_errors": [f"{r['text']}: {r['intent']} -> {p.intent}({p.confidence:.2f})"
                              for r, p in zip(rows, parses) if r["intent"] != p.intent]}


async def parse_in_process(model: str, texts: list[str]):
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


async def parse_over_http(url: str, texts: list[str]):
    from core.settings import load_settings
    from dialogs.auth import shared_token
    from dialogs.engine import RasaDialogEngine

    # a server run by `tanfang rasa serve` takes only its token (TANFANG_RASA_TOKEN for another process)
    engine = RasaDialogEngine(url, timeout=30, token=shared_token(load_settings()))
    try:
        return [await engine.parse(t) for t in texts]
    finally:
        await engine.aclose()


def evaluate(names: list[str], model: str | None = None, url: str | None = None) -> dict:
    report: dict = {}
    for name in names:
        rows = SETS[name]()
        texts = [r["text"] for r in rows]
        parses = None
        if url:
            parses = asyncio.run(parse_over_http(url, texts))
        elif model:
            parses = asyncio.run(parse_in_process(model, texts))
        counts = {k: sum(1 for r in rows if r["kind"] == k) for k in ("urgent", "concern", "fine", "other")}
        entry: dict = {"examples": len(rows), "counts": counts}
        if parses is not None:
            entry.update(intent_figures(rows, parses))
        entry.update(score(rows, parses))
        report[name] = entry
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", help="trained model .tar.gz, loaded in-process (Rasa env Python)")
    ap.add_argument("--url", help="parse through a running Rasa server instead (POST /model/parse)")
    ap.add_argument("--rules-only", action="store_true", help="no NLU: the safety rules alone")
    ap.add_argument("--set", choices=[*SETS, "all"], default="all")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args(argv)
    if not (a.rules_only or a.model or a.url):
        ap.error("give a MODEL, --url or --rules-only")
    names = list(SETS) if a.set == "all" else [a.set]
    report = evaluate(names, None if a.rules_only else a.model, None if a.rules_only else a.url)
    text = json.dumps(report, ensure_ascii=False, indent=1)
    print(text)
    if a.json:
        Path(a.json).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
