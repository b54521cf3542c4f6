"""The question table and the SMS templates are read from YAML files: a wrong file is refused
whole, with the row named, instead of loading half a table."""

from __future__ import annotations

import pytest

from core.questions import QUESTIONS, QUESTIONS_FILE, load_questions
from core.sms_templates import TEMPLATES, TEMPLATES_FILE, load_templates

GOOD_QUESTION = ("- slot: health_mobility\n  form: health_form\n  item_key: mobility\n"
                 "  question: 腿脚咋样？\n  yesno: 腿脚还方便吗？方便请按1，不方便请按2。\n")


def test_the_files_in_the_repo_load():
    assert load_questions() == QUESTIONS and len(QUESTIONS) == 10
    assert load_templates() == TEMPLATES and "urgent" in TEMPLATES
    assert QUESTIONS_FILE.name == "questions.yml" and TEMPLATES_FILE.name == "sms_templates.yml"


@pytest.mark.parametrize("text, refusal", [
    pytest.param("", "a list of questions", id="empty"),
    pytest.param(GOOD_QUESTION + "  colour: red\n", "question 1", id="unknown-key"),
    pytest.param(GOOD_QUESTION.replace("form: health_form", "form: weather_form"), "weather_form", id="unknown-form"),
    pytest.param(GOOD_QUESTION + "  topic: 腿|(脚\n", "question 1", id="topic-not-a-regex"),
    pytest.param(GOOD_QUESTION + "  concern_intents: report_illness\n", "must be a list", id="intents-not-a-list"),
    pytest.param(GOOD_QUESTION + GOOD_QUESTION, "a slot twice", id="slot-twice"),
    pytest.param(GOOD_QUESTION + "- just words\n", "question 2", id="row-not-a-mapping"),
])
def test_a_wrong_question_file_is_refused_whole(tmp_path, text, refusal):
    path = tmp_path / "questions.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=refusal):
        load_questions(path)


GOOD_TEMPLATE = "urgent:\n  label: 紧急\n  wording: 紧急：${name}说“${said}”。\n  params: [name, said]\n"


@pytest.mark.parametrize("text, refusal", [
    pytest.param("", "a mapping of kinds", id="empty"),
    pytest.param(GOOD_TEMPLATE.replace("[name, said]", "[name]"), "placeholders", id="placeholder-not-a-param"),
    pytest.param(GOOD_TEMPLATE.replace("[name, said]", "[name, said, phone]"), "placeholders", id="param-not-in-wording"),
    pytest.param(GOOD_TEMPLATE.replace("  label: 紧急\n", ""), "缺少", id="no-label"),
])
def test_a_wrong_template_file_is_refused_whole(tmp_path, text, refusal):
    path = tmp_path / "sms_templates.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=refusal):
        load_templates(path)
