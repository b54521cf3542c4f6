"""``python -m dialogs.generate [--check]``: regenerate the Rasa YAML from its sources.

生成 Rasa 数据 (regenerate the Rasa YAML). ``--check`` writes nothing and exits 1 when a file is stale.
"""

from __future__ import annotations

import argparse
import sys

from dialogs.generate import DIALOGS, stale, write_all


def _shown(path) -> str:
    try:
        return str(path.relative_to(DIALOGS.parent))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dialogs.generate",
                                 description="生成 Rasa 数据文件 (regenerate the Rasa YAML from its sources)")
    ap.add_argument("--check", action="store_true", help="只检查，不写入 (only check; exit 1 when stale)")
    args = ap.parse_args(argv)
    if args.check:
        old = stale()
        for p in old:
            print(f"过期 (stale): {_shown(p)}")
        return 1 if old else 0
    for p in write_all():
        print(f"已写入 (written): {_shown(p)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
