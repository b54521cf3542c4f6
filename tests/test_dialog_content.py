"""The Rasa project content: held-out set never trained on, domain consistent with the catalogue."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from core.questions import CONCERN_INTENTS, FORMS, QUESTIONS, URGENT_INTENTS
from dialogs.generate.calls import FOLLOWUP_FORM

DIALOGS = Path(__file__).resolve().parents[1] / "dialogs"


def _norm(text: str) -> str:
    text = re.sub(r"\[([^\]]+)\](\([^)]*\)|\{[^}]*\})", r"\1", text)  # strip entity annotations
    return re.sub(r"[\s，。,.!！?？、~～…]+", "", text)


def training_texts() -> set[str]:
    texts = set()
    for path in (DIALOGS / "data").glob("*.yml"):
        for block in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("nlu", []):
            for line in str(block.get("examples", "")).splitlines():
                line = line.strip()
                if line.startswith("- "):
                    texts.add(_norm(line[2:]))
    return texts


def test_heldout_set_never_overlaps_training_data():
    from dialogs.eval.evaluate import load_heldout

    rows = load_heldout()
    assert len(rows) >= 100
    train = training_texts()
    assert len(train) > 500
    overlap = [r["text"] for r in rows if _norm(r["text"]) in train]
    assert overlap == []


def _grams(text: str, n: int = 4) -> set[str]:
    t = _norm(text)
    return {t[i:i + n] for i in range(max(1, len(t) - n + 1))}


def near_duplicates(texts: list[str], train: set[str], threshold: float = 0.8) -> list[tuple[str, str, float]]:
    """(held-out text, training text, Jaccard of character 4-grams) above the threshold."""
    train_grams = [(t, _grams(t)) for t in train]
    found = []
    for text in texts:
        g = _grams(text)
        for t, tg in train_grams:
            j = len(g & tg) / len(g | tg)
            if j > threshold:
                found.append((text, t, round(j, 2)))
    return found


def test_near_duplicate_check_catches_a_copied_line():
    train = {_norm("俺家老婆子刚才一头栽那儿了，咋叫都叫不醒")}
    assert near_duplicates(["俺家老婆子刚才一头栽那儿了，咋叫都叫不醒啊"], train)
    assert not near_duplicates(["老伴在厕所里半天没出来"], train)


def test_independent_heldout_never_overlaps_training_data():
    from dialogs.eval.evaluate import load_blind, load_independent

    rows = load_independent() + load_blind()
    train = training_texts()
    texts = [r["text"] for r in rows]
    assert [t for t in texts if _norm(t) in train] == []
    assert near_duplicates(texts, train) == []


def test_independent_heldout_is_big_and_varied_enough():
    from dialogs.eval.evaluate import load_heldout, load_independent

    rows = load_independent()
    kinds = {k: [r for r in rows if r["kind"] == k] for k in ("urgent", "concern", "fine")}
    assert len(rows) >= 150 and len(kinds["urgent"]) >= 40 and len(kinds["concern"]) >= 60 and len(kinds["fine"]) >= 50
    assert {r["dimension"] for r in kinds["concern"]} == {"health", "economy", "family", "safety", "needs"}
    assert {r["intent"] for r in kinds["urgent"]} == set(URGENT_INTENTS)
    assert len({r["who"] for r in rows}) >= 8  # many voices, not one
    asked = {r["expects"] for r in rows} - {None}
    assert asked == {q.slot for q in QUESTIONS}  # answers to every question
    heldout = {_norm(r["text"]) for r in load_heldout()}
    assert not [r["text"] for r in rows if _norm(r["text"]) in heldout]  # not a copy of the first set


def test_heldout_covers_every_urgent_intent_and_the_kinds():
    from dialogs.eval.evaluate import load_heldout

    rows = load_heldout()
    assert {r["intent"] for r in rows if r["kind"] == "urgent"} == set(URGENT_INTENTS)
    assert {r["kind"] for r in rows} == {"urgent", "concern", "fine", "other"}


def test_domain_matches_the_mapping_and_the_catalogue():
    domain = yaml.safe_load((DIALOGS / "domain.yml").read_text(encoding="utf-8"))
    for q in QUESTIONS:
        assert q.slot in domain["forms"][q.form]["required_slots"]
        assert f"action_ask_{q.slot}" in domain["actions"]
        mapping = domain["slots"][q.slot]["mappings"][0]
        assert set(URGENT_INTENTS) <= set(mapping["not_intent"])  # urgent never fills an answer
    assert list(domain["forms"]) == [*FORMS, FOLLOWUP_FORM]  # the visit's forms, then last time's concerns
    for intent in (*URGENT_INTENTS, *CONCERN_INTENTS, "affirm", "deny", "ask_repeat", "request_human", "greet"):
        assert intent in domain["intents"]
    assert "checkin_outcome" in domain["slots"]
    total = sum(len(domain["forms"][f]["required_slots"]) for f in FORMS)
    assert 8 <= total <= 12  # short enough for a phone call


def test_every_form_has_an_urgent_interrupt_rule():
    rules = yaml.safe_load((DIALOGS / "data" / "rules.yml").read_text(encoding="utf-8"))["rules"]
    for form in (*FORMS, FOLLOWUP_FORM):
        for intent in URGENT_INTENTS:
            assert any(r.get("condition") == [{"active_loop": form}] and r["steps"][0] == {"intent": intent}
                       and r["steps"][1] == {"action": "action_urgent"} for r in rules), (form, intent)


def test_conversation_tests_put_an_urgent_phrase_in_every_form():
    text = "\n".join(p.read_text(encoding="utf-8") for p in (DIALOGS / "tests").glob("*.yml"))
    tests = yaml.safe_load(text) if False else None  # noqa: F841 (several files: check per form below)
    for form in FORMS:
        assert re.search(rf"active_loop: {form}[\s\S]*?intent: urgent_", text), form


def _rasa_bin() -> Path | None:
    from core.settings import load_settings
    from dialogs.runtime import ensure_rasa_env

    try:
        env = ensure_rasa_env(load_settings(), log=lambda *_: None)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Rasa environment: {exc}")
    exe = Path(env) / "bin" / "rasa"
    return exe if exe.exists() else None


@pytest.mark.rasa
def test_rasa_data_validate_is_clean():
    exe = _rasa_bin()
    if exe is None:
        pytest.skip("rasa executable not found")
    done = subprocess.run([str(exe), "data", "validate", "--fail-on-warnings"], cwd=DIALOGS,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
