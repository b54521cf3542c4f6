"""The real twilio client against Stoplight Prism serving Twilio's own OpenAPI spec.

Prism validates every request against ``twilio_api_v2010.json`` (from npm ``@twilio/cli-core``)
and answers 422 when a parameter is wrong, so these tests fail if ``TwilioCallPlacer`` sends
something Twilio would refuse. The spec's repeated-key array fields (``StatusCallbackEvent``)
get ``style: form, explode: true`` here, which Prism needs to accept what the client sends.
Peers installed by ``.ci/setup.d/40-twilio.sh``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from twilio.base.exceptions import TwilioRestException

from voice.twilio_client import STATUS_EVENTS, TwilioCallPlacer, TwilioNotConfigured
from sim.net import free_port

PEERS = Path(os.environ.get("TANFANG_TEST_TWILIO_PEERS")
             or Path.home() / ".cache/tanfang/npm/twilio-peers-prism5.14.2-clicore9.0.0")
PRISM = PEERS / "node_modules/.bin/prism"
SPEC = PEERS / "node_modules/@twilio/cli-core/src/services/twilio-api/twilio_api_v2010.json"
ACCOUNT = "AC" + "0" * 32


def patch_spec(spec: dict) -> int:
    """Give every array field of a form body ``style: form, explode: true``; returns how many."""
    patched = 0
    for ops in spec["paths"].values():
        for op in ops.values():
            if not isinstance(op, dict):
                continue
            form = op.get("requestBody", {}).get("content", {}).get("application/x-www-form-urlencoded")
            if not form:
                continue
            encoding = form.setdefault("encoding", {})
            for name, prop in form["schema"].get("properties", {}).items():
                if prop.get("type") == "array":
                    encoding[name] = {"style": "form", "explode": True}
                    patched += 1
    return patched


@pytest.fixture(scope="module")
def prism(tmp_path_factory):
    if not (PRISM.exists() and SPEC.exists()):
        if os.environ.get("CI"):
            pytest.fail(f"Prism/Twilio spec missing in {PEERS}: run .ci/setup.d/40-twilio.sh")
        pytest.skip(f"Prism not installed in {PEERS} (run .ci/setup.d/40-twilio.sh)")
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    assert patch_spec(spec) >= 2
    spec_file = tmp_path_factory.mktemp("prism") / "twilio_api_v2010.patched.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    port = free_port()
    log = open(spec_file.parent / "prism.log", "w")
    proc = subprocess.Popen([str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), str(spec_file)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prism exited: {(spec_file.parent / 'prism.log').read_text()[-2000:]}")
        try:
            httpx.get(url + f"/2010-04-01/Accounts/{ACCOUNT}/Calls/CA{'0' * 32}.json", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.fail("prism did not start in 90 s")
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


@pytest.fixture
def placer_settings(settings, prism):
    settings.twilio.api_base_url = prism
    settings.twilio.public_base_url = "https://tanfang.example.org"
    settings.twilio.from_number = "+8637100000000"
    settings.secrets.twilio_account_sid = SecretStr(ACCOUNT)
    settings.secrets.twilio_auth_token = SecretStr("test-auth-token")
    return settings


class RecordingHttp:
    """Wraps the client's real HTTP client to keep what it sent (the wire stays real)."""

    def __init__(self):
        from twilio.http.http_client import TwilioHttpClient
        self.inner = TwilioHttpClient(timeout=15)
        self.sent = []

    def request(self, method, url, params=None, data=None, headers=None, auth=None, timeout=None,
                allow_redirects=False):
        self.sent.append((method, url, data))
        return self.inner.request(method, url, params=params, data=data, headers=headers, auth=auth,
                                  timeout=timeout, allow_redirects=allow_redirects)


def test_calls_create_is_valid_against_twilios_spec(placer_settings):
    http = RecordingHttp()
    placer = TwilioCallPlacer(placer_settings, http_client=http)
    call = placer.create_call("+8613800001111", attempt_id=42)
    assert call.sid.startswith("CA") and call.status
    method, url, data = http.sent[0]
    assert method == "POST" and url == f"{placer_settings.twilio.api_base_url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    assert data["Url"] == "https://tanfang.example.org/twilio/voice?attempt=42"
    assert data["StatusCallback"] == "https://tanfang.example.org/twilio/status?attempt=42"
    assert data["StatusCallbackEvent"] == STATUS_EVENTS
    assert data["MachineDetection"] == "Enable" and data["Timeout"] == 30 and data["From"] == "+8637100000000"


def test_fetch_and_hang_up_go_through_the_spec(placer_settings):
    placer = TwilioCallPlacer(placer_settings)
    sid = "CA" + "1" * 32
    assert placer.fetch(sid).sid.startswith("CA")
    assert placer.hang_up(sid).sid.startswith("CA")


def test_prism_refuses_what_twilio_would_refuse(placer_settings):
    """The peer really validates: a method outside the spec's enum is a 422, not a pass."""
    placer = TwilioCallPlacer(placer_settings)
    with pytest.raises(TwilioRestException) as err:
        placer.client.calls.create(to="+8613800001111", from_="+8637100000000",
                                   url="https://tanfang.example.org/twilio/voice", method="BREW")
    assert err.value.status == 422


def test_unpatched_spec_rejects_repeated_status_events(placer_settings, tmp_path):
    """Why the patch exists: without it Prism refuses the repeated StatusCallbackEvent keys."""
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    spec_file = tmp_path / "unpatched.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen([str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), str(spec_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(180):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        placer_settings.twilio.api_base_url = url
        with pytest.raises(TwilioRestException) as err:
            TwilioCallPlacer(placer_settings).create_call("+8613800001111", attempt_id=1)
        assert err.value.status == 422
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_missing_configuration_is_named(settings):
    with pytest.raises(TwilioNotConfigured) as err:
        TwilioCallPlacer(settings)
    assert "TANFANG_TWILIO_ACCOUNT_SID" in str(err.value) and "twilio.public_base_url" in str(err.value)
