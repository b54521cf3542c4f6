"""What sealing personal data costs: a large roster imported, looked up and exported.

    PYTHONPATH=. .venv/bin/python bench/roster_at_rest.py [--elders 5000] [--url postgresql+psycopg://...]

The sample village (data/samples/roster_sample.csv) is repeated with fresh valid ID numbers until
``--elders`` rows; a fresh SQLite file (or the given database, into a new schema-less run: give an
empty database) under a temporary folder. Prints one JSON object of seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

from bench.common import scratch_database
from data import idcard, repo, roster
from data.crypto import DataKeys, new_key

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "samples" / "roster_sample.csv"


def big_roster(path: Path, n: int) -> list[str]:
    header, rows, _ = roster.read_table(SAMPLE)
    idc = header.index("公民身份号码")
    sex = header.index("性别")
    hh_ids = [j for j, h in enumerate(header) if h.startswith("家庭成员") and h.endswith("公民身份号码")]
    out, ids = [], []
    for i in range(n):
        r = list(rows[i % len(rows)])
        born = idcard.birth_date(r[idc])
        r[idc] = idcard.make_id("4102%02d" % (i // 900 % 100), born, i % 900, "M" if r[sex] == "男" else "F")
        for j in hh_ids:
            r[j] = ""  # household members keep their names; their IDs would repeat across copies
        out.append(r)
        ids.append(r[idc])
    roster.write_table(path, header, [dict(zip(header, r)) for r in out])
    return ids


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, round(time.perf_counter() - start, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--elders", type=int, default=5000)
    ap.add_argument("--url", default="")
    args = ap.parse_args()
    with scratch_database(args.url, keys=DataKeys.from_b64(new_key())) as (db, tmp):
        ids = big_roster(tmp / "big.csv", args.elders)
        limits = roster.RosterLimits(max_rows=args.elders)
        parsed, t_parse = timed(lambda: roster.parse_file(tmp / "big.csv", limits=limits))
        assert not parsed.errors, parsed.errors[:3]

        def load():
            with db.session() as s:
                return roster.import_records(s, parsed.records)
        first, t_import = timed(load)
        again, t_reimport = timed(load)

        def lookups():
            with db.session() as s:
                return sum(repo.get_elder(s, id_number=i) is not None for i in ids[:500])
        found, t_lookup = timed(lookups)

        def export():
            with db.session() as s:
                return roster.export_file(s, tmp / "out.csv")
        _n, t_export = timed(export)
        keys = DataKeys.from_b64(new_key())
        tokens = [keys.encrypt("+8613812345678", "phone") for _ in range(10000)]
        _x, t_seal = timed(lambda: [keys.encrypt("+8613812345678", "phone") for _ in range(10000)])
        _y, t_open = timed(lambda: [keys.decrypt(t, "phone") for t in tokens])
        print(json.dumps({
            "elders": args.elders, "database": db.engine.dialect.name, "at": dt.datetime.now().isoformat(timespec="seconds"),
            "parse_validate_s": t_parse, "first_import_s": t_import, "reimport_s": t_reimport,
            "created": first.created, "updated": again.updated,
            "lookup_by_id_500_s": t_lookup, "found": found, "export_csv_s": t_export,
            "seal_10k_values_s": t_seal, "open_10k_values_s": t_open,
        }, ensure_ascii=False))


if __name__ == "__main__":
    main()
