"""A fresh machine gets its Vosk model by itself.

When ``voice.vosk_model`` is not a model folder, ``tanfang voice fetch-model`` (run by
``scripts/setup``) downloads the official zip from ``voice.model_url`` — the models' own list,
https://alphacephei.com/vosk/models — checks it against the pinned ``voice.model_sha256``, and
unpacks it so that the folder ``voice.vosk_model`` exists. ``voice.model_mirror`` (a URL prefix:
an internal file server, a regional copy) is tried first with the same file name; whatever it
serves must have the same sha256. A download that does not match is deleted, never unpacked.

Which model: ``vosk-model-small-cn-0.22`` (42 MB, the default, what the tests use) or, on a
server, ``vosk-model-cn-0.22`` (1.3 GB): the model page gives 7.4 % CER on THCHS for the large
model against 17.2 % for the small one (docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import httpx

CHUNK = 1 << 20


class ModelFetchError(Exception):
    """The model could not be fetched or did not match its pinned hash (the message says why)."""


def is_model(folder: Path) -> bool:
    return (folder / "conf" / "mfcc.conf").is_file() or (folder / "conf" / "model.conf").is_file()


def candidate_urls(model_url: str, mirror: str = "") -> list[str]:
    """The mirror's copy first (same file name under the mirror prefix), then the official URL."""
    urls = []
    if mirror:
        urls.append(mirror.rstrip("/") + "/" + Path(urlsplit(model_url).path).name)
    urls.append(model_url)
    return urls


def _download(url: str, dest: Path, timeout: float) -> str:
    """Stream ``url`` to ``dest``; its sha256."""
    digest = hashlib.sha256()
    with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as resp:
        if resp.status_code != 200:
            raise ModelFetchError(f"{url}: HTTP {resp.status_code}")
        with open(dest, "wb") as out:
            for chunk in resp.iter_bytes(CHUNK):
                digest.update(chunk)
                out.write(chunk)
    return digest.hexdigest()


def _unpack(archive: Path, target: Path) -> None:
    """Unzip into a temporary folder beside ``target``; the one model folder inside becomes ``target``."""
    work = Path(tempfile.mkdtemp(prefix=".vosk-", dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise ModelFetchError(f"unsafe path in the model zip: {member}")
            zf.extractall(work)
        found = [p for p in [work, *work.iterdir()] if p.is_dir() and is_model(p)]
        if not found:
            raise ModelFetchError("the zip holds no Vosk model folder (no conf/mfcc.conf)")
        os.replace(found[-1], target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fetch_model(target: Path, model_url: str, sha256: str, mirror: str = "", *, timeout: float = 60.0,
                log: Callable[[str], None] = print) -> dict:
    """Make ``target`` a Vosk model folder (nothing to do when it already is one)."""
    target = Path(target).expanduser()
    if is_model(target):
        return {"model": str(target), "fetched": False}
    if not sha256:
        raise ModelFetchError("voice.model_sha256 is empty: a model is only installed against a pinned hash")
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in candidate_urls(model_url, mirror):
        fd, tmp = tempfile.mkstemp(prefix=".vosk-download-", suffix=".zip", dir=target.parent)
        os.close(fd)
        archive = Path(tmp)
        try:
            log(f"下载语音模型 downloading the Vosk model from {url}")
            got = _download(url, archive, timeout)
            if got != sha256.lower():
                raise ModelFetchError(f"{url}: sha256 {got} is not the pinned {sha256}")
            _unpack(archive, target)
            return {"model": str(target), "fetched": True, "url": url, "sha256": got}
        except (ModelFetchError, httpx.HTTPError, zipfile.BadZipFile, OSError) as exc:
            errors.append(f"{url}: {exc}" if not str(exc).startswith(url) else str(exc))
        finally:
            archive.unlink(missing_ok=True)
    raise ModelFetchError("没有取得语音模型 (could not fetch the Vosk model): " + "; ".join(errors))
