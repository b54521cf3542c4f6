"""Deterministic copies of the Vosk model (tests, benchmarks).

Kaldi adds random dither to the features, so the same audio can decode differently from run to
run. ``nodither_copy`` makes ``~/.cache/tanfang/vosk-models/<name>-nodither``: the small files
copied, the big ones (am/, graph/, ivector/) symlinked, and ``--dither=0.0`` appended to
``conf/mfcc.conf``. ``fast`` also appends ``--beam=10 --max-active=2000`` to ``conf/model.conf``
(the fast decoding path measured in docs/voice-asr.md). Idempotent: an up-to-date copy is reused.

    python -m voice.model_copy [MODEL_DIR] [--fast]
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

CACHE = Path("~/.cache/tanfang/vosk-models")
DEFAULT_MODEL = Path("/work/shared/models/vosk-model-small-cn-0.22")
FAST_OPTIONS = ["--beam=10", "--max-active=2000"]


def nodither_copy(model_dir: str | Path = DEFAULT_MODEL, cache: str | Path = CACHE, fast: bool = False) -> Path:
    src = Path(model_dir).expanduser().resolve()
    if not (src / "conf" / "mfcc.conf").is_file():
        raise FileNotFoundError(f"not a Vosk model folder (no conf/mfcc.conf): {src}")
    name = src.name + "-nodither" + ("-fast" if fast else "")
    dst = Path(cache).expanduser() / name
    stamp = dst / ".source"
    if stamp.is_file() and stamp.read_text() == str(src):
        return dst
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for entry in src.iterdir():
        if entry.name == "conf":
            (tmp / "conf").mkdir()
            for f in entry.iterdir():
                shutil.copyfile(f, tmp / "conf" / f.name)
        elif entry.is_dir():
            os.symlink(entry, tmp / entry.name)
        else:
            shutil.copyfile(entry, tmp / entry.name)
    _append(tmp / "conf" / "mfcc.conf", ["--dither=0.0"])
    if fast:
        _append(tmp / "conf" / "model.conf", FAST_OPTIONS)
    (tmp / ".source").write_text(str(src))
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)
    return dst


def _append(conf: Path, options: list[str]) -> None:
    lines = conf.read_text().splitlines()
    keys = {o.split("=")[0] for o in options}
    lines = [line for line in lines if line.split("=")[0].strip() not in keys]
    conf.write_text("\n".join(lines + options) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    fast = "--fast" in args
    args = [a for a in args if a != "--fast"]
    print(nodither_copy(args[0] if args else DEFAULT_MODEL, fast=fast))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
