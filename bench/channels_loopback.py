"""Send latency of the mainland channels through their real SDKs to the loopback stand-ins:
WeComChannel (wechatpy, a task card and a text) and AliyunSmsChannel (Dysms SDK, one template
SMS, signed ACS3-HMAC-SHA256 and verified by the stand-in), and the WeCom callback route (a signed,
encrypted click decrypted and acted on). What it measures is our code + the SDK + HTTP on 127.0.0.1,
not the providers.

    .venv/bin/python bench/channels_loopback.py [-n 200] [--json]

Results go into docs/wecom-sms.md by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.aliyun_sms import AliyunSmsChannel  # noqa: E402
from bot.wecom import WeComChannel  # noqa: E402
from core.settings import Secrets, load_settings  # noqa: E402
from core.sms_templates import TEMPLATES, template_payload  # noqa: E402
from sim.aliyun_sms_api import AliyunSmsStandIn  # noqa: E402
from sim.wecom_api import WeComApiStandIn  # noqa: E402
from sim.net import local_server  # noqa: E402

CARD = "【探访】P1 紧急任务 #{n}：王秀英说「摔了一跤」\n地址：兰考县城关镇幸福村1组26号。紧急联系人：王军 15164753455。"


def _ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50_ms": round(statistics.median(s) * 1000, 1), "p95_ms": round(s[int(len(s) * 0.95) - 1] * 1000, 1)}


async def _timed(n: int, call) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        await call(i)
        out.append(time.perf_counter() - t)
    return out


async def main(n: int) -> dict:
    settings = load_settings(env={"TANFANG_DATA_DIR": tempfile.mkdtemp()})
    # a member gets at most 30 messages a minute from one app (the stand-in drops the rest, as WeCom
    # does): spread the sends over n members
    wecom = WeComApiStandIn("wwbench", "secret", 1000002, users={f"u{i}" for i in range(n)} | {"MaLi"})
    sms = AliyunSmsStandIn("LTAIbench", "secret", {"探访关爱"}, {"SMS_1": TEMPLATES["urgent"].wording})
    async with local_server(wecom.asgi()) as wurl, local_server(sms.asgi()) as surl:
        settings.wecom.corp_id, settings.wecom.agent_id, settings.wecom.api_base_url = "wwbench", 1000002, wurl
        settings.sms.endpoint, settings.sms.sign_name, settings.sms.templates = surl, "探访关爱", {"urgent": "SMS_1"}
        settings.secrets = Secrets(wecom_secret="secret", aliyun_access_key_id="LTAIbench",
                                   aliyun_access_key_secret="secret")
        wc, sc = WeComChannel(settings), AliyunSmsChannel(settings)
        await wc.send("MaLi", "warm-up")
        card = await _timed(n, lambda i: wc.send(f"u{i}", CARD.format(n=i), {"task_id": i, "actions": ["accept", "close"]}))
        text = await _timed(n, lambda i: wc.send(f"u{i}", f"提醒 {i}：请今天回电话。"))
        payload = template_payload("urgent", name="王秀英", said="摔了一跤起不来", phone="13800001111", visitor="马丽")
        sent = await _timed(n, lambda i: sc.send(f"139{i:08d}", "", payload))
    assert len(wecom.inbox) == 2 * n + 1 and len(sms.messages()) == n
    return {"n": n, "wecom_card": _ms(card), "wecom_text": _ms(text), "aliyun_sms": _ms(sent),
            "wecom_token_requests": wecom.token_requests}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = asyncio.run(main(args.n))
    print(json.dumps(result, ensure_ascii=False) if args.json else json.dumps(result, ensure_ascii=False, indent=1))
