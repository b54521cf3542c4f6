"""Each person's channel (联系渠道: Telegram/企业微信/短信) and WeCom UserID in the roster and the
visitors file: parsed, validated per row (nothing written on an error), imported, exported back."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

from sqlalchemy import func, select

from data import idcard, repo, roster
from data.models import EmergencyContact, FamilyMember, Visitor

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
IDN = idcard.make_id("410225", dt.date(1940, 5, 6), 21, "F")


def _write(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def _cli(db, tmp_path):
    from click.testing import CliRunner

    from tanfang.cli import cli

    env = {"TANFANG_DATABASE_URL": db.url, "TANFANG_DATA_DIR": str(tmp_path / "var"),
           "TANFANG_OUTPUT_DIR": str(tmp_path / "out")}
    return lambda *args: CliRunner().invoke(cli, [str(a) for a in args], env=env)


def _row(h, **over):
    base = {"县(市、区)": "兰考县", "乡镇(街道)": "城关镇", "村(居)": "幸福村", "姓名": "测试", "公民身份号码": IDN,
            "紧急联系人": "甲", "紧急联系人电话": "13800000000", "是否独居": "是"}
    base.update(over)
    return [base.get(c, "") for c in h]


def test_sms_and_wecom_channels_in_the_roster(db, tmp_path):
    h = roster.headers(1)
    rows = [h, _row(h, **{"紧急联系人联系渠道": "企业微信", "紧急联系人企业微信账号": "WangJun",
                          "子女1姓名": "王静", "子女1电话": "18556377523", "子女1联系渠道": "短信"})]
    parsed = roster.parse_file(_write(tmp_path / "ok.csv", rows))
    assert parsed.errors == []
    [rec] = parsed.records
    assert (rec.contacts[0]["channel"], rec.contacts[0]["wecom_user_id"]) == ("wecom", "WangJun")
    assert rec.family[0]["channel"] == "sms"
    with db.session() as s:
        roster.import_records(s, parsed.records)
    with db.session() as s:
        ec = s.scalars(select(EmergencyContact)).one()
        fm = s.scalars(select(FamilyMember)).one()
        assert (ec.channel, ec.wecom_user_id, fm.channel) == ("wecom", "WangJun", "sms")
        assert roster.records_from_db(s)[0].comparable() == rec.comparable()  # exported and read back the same


def test_wecom_or_sms_channel_errors_are_row_errors_and_nothing_is_written(db, tmp_path):
    h = roster.headers(1)
    rows = [h, _row(h),
            _row(h, **{"紧急联系人联系渠道": "微信"}),                                  # 3: unknown channel
            _row(h, **{"紧急联系人联系渠道": "企业微信"}),                              # 4: WeCom without UserID
            _row(h, **{"子女1姓名": "王静", "子女1联系渠道": "短信"}),                   # 5: SMS without phone
            _row(h, **{"紧急联系人企业微信账号": "王 军"}),                             # 6: not a UserID
            ]
    parsed = roster.parse_file(_write(tmp_path / "bad.csv", rows))
    got = {(e.row, e.column): e.reason for e in parsed.errors}
    assert got[(3, "紧急联系人联系渠道")] == "应为 Telegram/企业微信/短信（实为“微信”）"
    assert got[(4, "紧急联系人企业微信账号")].startswith("选择企业微信时须填写企业微信账号")
    assert got[(5, "子女1联系渠道")] == "选择短信时须填写电话"
    assert got[(6, "紧急联系人企业微信账号")].startswith("企业微信账号只能由")
    assert parsed.invalid_rows == {3, 4, 5, 6}
    cli = _cli(db, tmp_path)
    r = cli("elders", "import", tmp_path / "bad.csv")
    assert r.exit_code == 1 and "第3行 紧急联系人联系渠道: 应为 Telegram/企业微信/短信（实为“微信”）" in r.output
    r = cli("visitors", "add", "--name", "马丽", "--role", "网格员", "--channel", "企业微信")
    assert r.exit_code == 1 and "须填写企业微信账号" in r.output
    with db.session() as s:  # nothing was written
        assert s.scalar(select(func.count()).select_from(EmergencyContact)) == 0
        assert s.scalar(select(func.count()).select_from(Visitor)) == 0
    r = cli("visitors", "add", "--name", "马丽", "--role", "网格员", "--channel", "企业微信", "--wecom-user", "MaLi")
    assert r.exit_code == 0
    with db.session() as s:
        assert s.scalar(select(Visitor.channel).where(Visitor.wecom_user_id == "MaLi")) == "wecom"


def test_visitors_file_with_wecom_and_sms_channels(db, tmp_path):
    records, errors = roster.parse_visitors(SAMPLES / "visitors.csv")
    assert errors == []
    by_name = {r["name"]: r for r in records}
    assert (by_name["马丽"]["channel"], by_name["马丽"]["wecom_user_id"]) == ("wecom", "MaLi")
    assert by_name["周敏"]["channel"] == "telegram" and by_name["周敏"]["wecom_user_id"] is None
    with db.session() as s:
        assert repo.upsert_visitors(s, records) == (7, 0)
    with db.session() as s:
        assert s.scalar(select(Visitor).where(Visitor.wecom_user_id == "MaLi")).name == "马丽"
    bad = _write(tmp_path / "v.csv", [list(roster.VISITOR_COLUMNS),
                                      ["甲", "网格员", "13800000000", "兰考县", "", "", "飞鸽", ""],
                                      ["乙", "网格员", "", "兰考县", "", "", "短信", ""],
                                      ["丙", "志愿者", "13800000001", "兰考县", "", "", "企微", ""]])
    _, errors = roster.parse_visitors(bad)
    assert [(e.row, e.column) for e in errors] == [(2, "联系渠道"), (3, "联系渠道"), (4, "企业微信账号")]
