"""Personal data at rest (issue #14 item 24): ID and phone numbers sealed with AES-GCM under a key
from the environment, keyed hashes for look-ups, rotation, the migration of plaintext rows, and a
private data folder. On SQLite and PostgreSQL (``db``/``db_url``)."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import stat

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from core.app import App
from core.escalation import escalate_grade
from core.grading import Grade
from core.settings import SettingsError, load_settings
from data import crypto, phone, repo, roster
from data.crypto import DataKeyError, DataKeys
from data.db import Database, sqlite_path
from data.models import Base, Elder, EmergencyContact, FamilyMember, HouseholdMember, OutboxMessage, Task, Visitor
from tanfang.cli import cli
from tests.helpers import make_elder, make_visitor
from tests.test_roster import SAMPLE, sample_rows

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(100, 132))).decode()
NOW = dt.datetime(2026, 11, 3, 2, 0)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _sample_numbers() -> set[str]:
    """Every ID and phone number of the sample roster, as written and as stored (E.164)."""
    rows = sample_rows()
    h = rows[0]
    cols = [j for j, c in enumerate(h) if c.endswith(("公民身份号码", "电话", "证号"))]
    found = {r[j] for r in rows[1:] for j in cols if r[j]}
    digits = {v.replace("-", "") for v in found}
    return found | digits | {"+86" + d.lstrip("0") for d in digits if not d.startswith("41")}


def _all_stored_text(conn) -> str:
    """Every value of every table, read with plain SQL (no column type runs)."""
    out = []
    for table in Base.metadata.sorted_tables:
        for row in conn.execute(text(f"SELECT * FROM {table.name}")):
            out.extend(str(v) for v in row if v is not None)
    return "\n".join(out)


# ---- tokens ------------------------------------------------------------------------------------
def test_tokens_round_trip_and_refuse_tampering():
    keys = DataKeys.from_b64(KEY_A)
    one, two = keys.encrypt("+8613812345678", "phone"), keys.encrypt("+8613812345678", "phone")
    assert one != two  # a fresh 96-bit nonce per value
    assert one.startswith(f"enc1:{keys.kid}:") and crypto.key_id(one) == keys.kid
    assert keys.decrypt(one, "phone") == "+8613812345678"
    with pytest.raises(DataKeyError, match="篡改"):
        keys.decrypt(one, "id")  # the purpose is authenticated: a phone token is no ID number
    body = one.split(":", 2)[2]
    flipped = one[:-len(body)] + body[:20] + ("A" if body[20] != "A" else "B") + body[21:]
    with pytest.raises(DataKeyError, match="篡改"):
        keys.decrypt(flipped, "phone")
    other = DataKeys.from_b64(KEY_B)
    with pytest.raises(DataKeyError, match=keys.kid):
        other.decrypt(one, "phone")  # names the key the value needs
    with pytest.raises(DataKeyError, match="未加密"):
        keys.decrypt("13812345678", "phone")
    assert keys.hash("+8613812345678", "phone") == keys.hash("+8613812345678", "phone")
    assert keys.hash("+8613812345678", "phone") not in (keys.hash("+8613812345678", "id"),
                                                        other.hash("+8613812345678", "phone"))


@pytest.mark.parametrize("bad", ["", "short", base64.b64encode(b"x" * 31).decode(), "!" * 44])
def test_malformed_keys_are_refused(bad, tmp_path):
    with pytest.raises(DataKeyError, match="32字节"):
        crypto.decode_key(bad)
    env = {"TANFANG_DATA_DIR": str(tmp_path / "var"), "TANFANG_DATA_KEY": bad or "=", "TANFANG_DATA_KEY_OLD": KEY_A}
    with pytest.raises(SettingsError, match="TANFANG_DATA_KEY"):
        App(load_settings(env=env)).db


def test_a_config_file_with_a_data_key_is_refused(tmp_path):
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"app:\n  data_key: {KEY_A}\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="secrets"):
        load_settings(env={}, config_path=cfg)


# ---- the database holds no plaintext ----------------------------------------------------------------
def test_no_plaintext_id_or_phone_anywhere_in_the_database(db, settings):
    parsed = roster.parse_file(SAMPLE)
    with db.session() as s:
        roster.import_records(s, parsed.records)
        make_visitor(s, phone="13700000002")
        elder = s.scalars(select(Elder).where(Elder.phone.is_not(None)).order_by(Elder.id)).first()
        # an urgent answer: a task whose detail and SMS bodies carry the elder's and contacts' numbers
        escalate_grade(s, settings, elder=elder, visit=None, grade=Grade("urgent", "safety"), text="我摔倒了", now=NOW)
    numbers = _sample_numbers() | {"13700000002", "+8613700000002"}
    with db.engine.connect() as conn:
        stored = _all_stored_text(conn)
        sealed = conn.execute(text("SELECT id_number, phone, id_number_hash FROM elders")).all()
    assert not [n for n in numbers if n in stored]
    assert all(i.startswith("enc1:") and (p is None or p.startswith("enc1:")) and len(h) == 64 for i, p, h in sealed)
    with db.session() as s:  # and the application still reads them, as E.164
        assert s.get(Elder, elder.id).phone.startswith("+86")
        assert s.scalars(select(Task)).one().detail.startswith("老人说")  # the sealed detail opens
        sms = s.scalars(select(OutboxMessage).where(OutboxMessage.channel == "sms")).all()
        assert phone.national(elder.phone) in sms[0].body  # people read 13812345678, not the token
        assert {m.recipient for m in sms} >= {c.phone for c in elder.emergency_contacts}
    path = sqlite_path(db.url)
    if path is not None:  # the file itself, after the write-ahead log is folded in
        db.checkpoint()
        raw = path.read_bytes() + (path.with_name(path.name + "-wal").read_bytes()
                                   if path.with_name(path.name + "-wal").exists() else b"")
        assert not [n for n in numbers if n.encode() in raw]


def test_lookups_go_through_the_keyed_hash(db):
    with db.session() as s:
        elder = make_elder(s, id_number="11010519491231002X", phone="138 0000 1111")
        elder.family_members.append(FamilyMember(name="王小明", phone="0371-2651234"))
        make_visitor(s, phone="+86 371 2651234")
    with db.session() as s:
        assert repo.get_elder(s, id_number="11010519491231002x").id == elder.id  # lower-case x
        assert repo.find_elder(s, ref="11010519491231002X").id == elder.id
        assert s.scalars(select(Elder).where(Elder.phone_hash == "13800001111")).one().id == elder.id
        # one number, written three ways, finds the same people (caller ID arrives in E.164)
        for written in ("0371-2651234", "03712651234", "+863712651234"):
            found = repo.people_by_phone(s, phone=written)
            assert [f.name for f in found["family_members"]] == ["王小明"] and len(found["visitors"]) == 1
        assert repo.people_by_phone(s, phone="+8613900002222")["emergency_contacts"][0].name == "王建国"
        assert repo.find_visitor(s, name="李网格", role="grid_worker", phone="03712651234") is not None
        with pytest.raises(TypeError, match="_hash"):
            select(Elder).where(Elder.id_number == "11010519491231002X")  # would never match a token
        with pytest.raises(TypeError, match="_hash"):
            select(Visitor).where(Visitor.phone.in_(["13800001111"]))
        assert s.scalars(select(Elder).where(Elder.phone.is_not(None))).all()  # IS NULL still works
        # the same select of sealed columns run twice: SQLAlchemy matches the cached statement's result
        # columns by comparing column with column, which is not a comparison by value
        for _ in range(2):
            assert s.connection().execute(select(Elder.id, Elder.phone).where(Elder.id > 0)).all()[0].phone


def test_id_numbers_stay_unique_through_their_hash(db):
    with db.session() as s:
        make_elder(s, id_number="11010519491231002X")
    with pytest.raises(IntegrityError):
        with db.session() as s:
            make_elder(s, id_number="11010519491231002x", name="另一个人")


def test_reimport_updates_by_hash(db):
    parsed = roster.parse_file(SAMPLE)
    for _ in range(2):
        with db.session() as s:
            result = roster.import_records(s, parsed.records)
    assert (result.created, result.updated) == (0, 30)
    with db.session() as s:
        assert len(repo.list_elders(s)) == 30


# ---- key rotation -------------------------------------------------------------------------------
def test_rotation_reseals_everything_under_the_new_key(db_url, tmp_path):
    old = Database(db_url, keys=DataKeys.from_b64(KEY_A))
    old.upgrade()
    with old.session() as s:
        roster.import_records(s, roster.parse_file(SAMPLE).records)
        make_visitor(s, phone="13700000002")
    new_keys = DataKeys.from_b64(KEY_B, [KEY_A])
    report = Database(db_url, keys=new_keys).rotate_keys(new_keys)
    assert report["key_id"] == new_keys.kid and report["values"] > 100
    assert report["was_under"] == {DataKeys.from_b64(KEY_A).kid: report["values"]}
    with old.engine.connect() as conn:
        tokens = [v for (v,) in conn.execute(text("SELECT phone FROM emergency_contacts"))]
    assert tokens and all(crypto.key_id(t) == new_keys.kid for t in tokens)
    only_new = Database(db_url, keys=DataKeys.from_b64(KEY_B))
    with only_new.session() as s:
        assert len(repo.list_elders(s, full=True)) == 30
        assert repo.people_by_phone(s, phone="13700000002")["visitors"]  # hashes recomputed
    with pytest.raises(DataKeyError, match=new_keys.kid):
        with Database(db_url, keys=DataKeys.from_b64(KEY_A)).session() as s:
            repo.list_elders(s)
    for d in (old, only_new):
        d.dispose()


def test_rotate_key_command_moves_off_the_development_key(db, tmp_path):
    env = {"TANFANG_DATABASE_URL": db.url, "TANFANG_DATA_DIR": str(tmp_path / "var"),
           "TANFANG_OUTPUT_DIR": str(tmp_path / "out")}
    runner = CliRunner()
    assert runner.invoke(cli, ["elders", "import", str(SAMPLE)], env=env).exit_code == 0
    refused = runner.invoke(cli, ["db", "rotate-key"], env=env)
    assert refused.exit_code == 1 and "TANFANG_DATA_KEY" in refused.output
    new = runner.invoke(cli, ["db", "new-key"], env=env).output.strip()
    assert len(base64.b64decode(new)) == 32
    done = runner.invoke(cli, ["db", "rotate-key"], env={**env, "TANFANG_DATA_KEY": new})
    assert done.exit_code == 0 and "data.key" in done.output, done.output
    listed = runner.invoke(cli, ["elders", "list", "--json"], env={**env, "TANFANG_DATA_KEY": new})
    assert listed.exit_code == 0 and "王玉珍" in listed.output
    failed = runner.invoke(cli, ["elders", "list"], env=env)  # the development key no longer opens them
    assert failed.exit_code != 0


# ---- the migration of existing plaintext rows ---------------------------------------------------------
PLAIN_ID, PLAIN_PHONE, CONTACT_PHONE = "410225194503150012", "13800001111", "0371-2651234"


def _plaintext_rows(conn) -> None:
    conn.execute(text(
        "INSERT INTO elders (id, id_number, name, sex, phone, county, township, village, lives_at_registration,"
        " is_disabled, disability_cert_no, living_alone, empty_nest, left_behind, disabled_care, severely_disabled,"
        " family_planning, consent_visit, consent_share_family, preferred_channel) VALUES (1, :idn, '王秀英', 'F',"
        " :ph, '兰考县', '城关镇', '幸福村', true, true, :cert, true, false, false, false, false, false, true, false,"
        " 'phone')"), {"idn": PLAIN_ID, "ph": PLAIN_PHONE, "cert": PLAIN_ID + "21"})
    conn.execute(text("INSERT INTO emergency_contacts (elder_id, priority, name, phone) VALUES (1, 1, '王建国', :p)"),
                 {"p": CONTACT_PHONE})
    conn.execute(text("INSERT INTO household_members (elder_id, seq, name, id_number, on_dibao, on_tekun)"
                      " VALUES (1, 1, '王秀英', :idn, false, false)"), {"idn": PLAIN_ID})
    conn.execute(text("INSERT INTO visitors (name, role, phone, active) VALUES ('马丽', 'grid_worker', '13837800101', true)"))
    conn.execute(text("INSERT INTO outbox (created_at, dedupe_key, channel, recipient, body, state, attempts,"
                      " next_attempt_at) VALUES (:t, 'k1', 'sms', '13900002222', :body, 'pending', 0, :t)"),
                 {"t": NOW, "body": f"请马上联系老人（{PLAIN_PHONE}）"})


def test_migration_seals_plaintext_rows_and_loses_nothing(db_url, tmp_path):
    db = Database(db_url, data_dir=tmp_path / "var")
    db.upgrade("0003")
    with db.engine.begin() as conn:
        _plaintext_rows(conn)
    db.upgrade()
    with db.engine.connect() as conn:
        stored = _all_stored_text(conn)
        assert conn.execute(text("SELECT count(*) FROM emergency_contacts")).scalar() == 1  # nothing cascaded away
    for plain in (PLAIN_ID, PLAIN_PHONE, "2651234", "13900002222", "13837800101"):
        assert plain not in stored
    with db.session() as s:
        elder = repo.get_elder(s, id_number=PLAIN_ID)
        assert (elder.phone, elder.disability_cert_no) == ("+8613800001111", PLAIN_ID + "21")
        assert elder.emergency_contacts[0].phone == "+863712651234"  # E.164 now
        assert elder.household_members[0].id_number == PLAIN_ID
        assert repo.people_by_phone(s, phone="13837800101")["visitors"][0].name == "马丽"
        msg = s.scalars(select(OutboxMessage)).one()
        assert (msg.recipient, msg.body) == ("+8613900002222", f"请马上联系老人（{PLAIN_PHONE}）")
    path = sqlite_path(db.url)
    if path is not None:
        assert PLAIN_PHONE.encode() not in path.read_bytes() and PLAIN_ID.encode() not in path.read_bytes()
    db.downgrade("0003")  # and back: plaintext in the national form the old code expects
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT id_number, phone FROM elders")).one() == (PLAIN_ID, PLAIN_PHONE)
        assert conn.execute(text("SELECT phone FROM emergency_contacts")).scalar() == CONTACT_PHONE
    db.upgrade()
    db.dispose()


# ---- keys and files --------------------------------------------------------------------------------
def test_without_a_key_a_private_development_key_is_made_loudly(tmp_path, caplog):
    data_dir = tmp_path / "var"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    settings = load_settings(env={"TANFANG_DATA_DIR": str(data_dir)})
    app = App(settings)
    with caplog.at_level(logging.WARNING, logger="tanfang.data.crypto"):
        app.ready_db()
        with app.db.session() as s:
            make_elder(s)
    assert any("TANFANG_DATA_KEY" in r.getMessage() for r in caplog.records)
    assert _mode(data_dir) == 0o700  # tightened
    assert _mode(data_dir / "tanfang.db") == 0o600 and _mode(data_dir / "data.key") == 0o600
    assert app.db.keys.source == str(data_dir / "data.key")
    app.close()


def test_with_the_environment_key_no_key_file_is_made(tmp_path):
    env = {"TANFANG_DATA_DIR": str(tmp_path / "var"), "TANFANG_DATA_KEY": KEY_A}
    app = App(load_settings(env=env))
    app.ready_db()
    with app.db.session() as s:
        make_elder(s)
    assert not (tmp_path / "var" / "data.key").exists()
    with app.db.engine.connect() as conn:
        token = conn.execute(text("SELECT phone FROM elders")).scalar()
    assert crypto.key_id(token) == DataKeys.from_b64(KEY_A).kid
    app.close()


def test_logs_folder_and_files_are_private(settings):
    from dialogs.runtime import logs_dir
    from data.files import open_private

    logs = logs_dir(settings)
    with open_private(logs / "rasa-actions.log") as fh:
        fh.write(b"x")
    assert _mode(settings.app.data_dir) == 0o700 and _mode(logs) == 0o700
    assert _mode(logs / "rasa-actions.log") == 0o600


def test_development_key_file_is_shared_by_processes_of_one_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'db' / 'tanfang.db'}"
    first, second = Database(url), Database(url)
    assert first.keys.kid == second.keys.kid
    assert (tmp_path / "db" / "data.key").read_text().strip() and _mode(tmp_path / "db") == 0o700
    with first.session() as s:
        pass
    first.upgrade()
    with first.session() as s:
        make_elder(s)
    with second.session() as s:
        assert s.scalars(select(EmergencyContact)).one().phone == "+8613900002222"
        assert s.scalars(select(HouseholdMember)).all() == []
    first.dispose()
    second.dispose()
