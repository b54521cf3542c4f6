"""When a grammar decode is taken as the elder's answer (voice.short_answers), table-driven.

The rows marked "seen" are decodes the small Vosk model gave on the bench (docs/voice-phone.md)."""

from __future__ import annotations

import pytest

from core.ports import Transcript
from voice.short_answers import GRAMMARS, PHRASES, choose_answer, greets, says_one_thing


@pytest.mark.parametrize("grammar_text, one_thing", [
    ("是的", True), ("是 的", True), ("是是是", True), ("不是", True), ("不是不是", True),
    ("不对", True), ("没有", True), ("不中", True), ("中", True), ("嗯", True), ("嗯不是", True),
    ("很好", True), ("不太好", True), ("还行", True), ("一般", True), ("马马虎虎", True),
    ("是我", True), ("是我是我", True), ("不是我", True), ("方便", True), ("不方便", True),
    ("不对好", False),      # seen: 喂，你好 to the identity question
    ("不对有好", False),    # seen: the same
    ("不对是不", False),    # seen: 喂，是我，是我
    ("好不好", False), ("是不是", False), ("有没有", False),
    ("", False), ("摔倒", False),  # nothing the grammars know
])
def test_a_grammar_decode_says_one_thing(grammar_text, one_thing):
    assert says_one_thing(grammar_text) is one_thing


@pytest.mark.parametrize("free_text, greeting", [
    ("为你好", True), ("喂您好", True), ("哪位", True), ("你是谁呀", True),
    ("为", True), ("喂喂", True), ("喂 喂", True), ("唉", True), ("喂是我", True), ("为不是", True),
    ("是的", False), ("四的", False), ("不中", False), ("好", False), ("", False), ("是我", False),
])
def test_a_free_decode_that_greets(free_text, greeting):
    assert greets(free_text) is greeting


def test_every_grammar_phrase_has_a_meaning_and_the_grammars_are_built_from_them():
    assert GRAMMARS == {name: list(phrases) for name, phrases in PHRASES.items()}
    for phrases in PHRASES.values():
        for phrase in phrases:
            assert says_one_thing(phrase), phrase


def _free(text, *alternatives):
    return Transcript(text=text, confidence=0.6, alternatives=list(alternatives))


@pytest.mark.parametrize("grammar_text, free", [
    pytest.param("是的", _free("四的"), id="short-answer-misheard-freely"),
    pytest.param("是我", _free("吃完"), id="seen-its-me-misheard-freely"),
])
def test_a_short_answer_misheard_freely_is_the_grammar_phrase(grammar_text, free):
    text, confidence, alternatives = choose_answer(grammar_text, 0.9, free)
    assert (text, confidence) == (grammar_text, 0.9)
    assert free.text in alternatives  # the free words are still graded


@pytest.mark.parametrize("grammar_text, free", [
    pytest.param("不中", _free("不中"), id="both-agree"),
    pytest.param("没", _free("孩子们一年到头也不来个电话"), id="a-sentence"),
    pytest.param("[unk]", _free("嗯"), id="nothing-in-the-grammar"),
    pytest.param("不对是不", _free("喂是我"), id="seen-hello-its-me"),
    pytest.param("不是我", _free("喂是我"), id="seen-hello-its-me-as-not-me"),
    pytest.param("不对的好", _free("为你好"), id="seen-greeting-as-no"),
    pytest.param("对的好", _free("为你好"), id="seen-greeting-as-yes"),
    pytest.param("没好", _free("为你好"), id="seen-greeting-as-no-2"),
    pytest.param("不", _free("喂喂"), id="seen-hello-hello-as-no"),
    pytest.param("不对", _free("为"), id="seen-hello-as-no"),
])
def test_otherwise_the_free_decode_is_what_was_said(grammar_text, free):
    assert choose_answer(grammar_text, 0.9, free) == (free.text, free.confidence, free.alternatives)
