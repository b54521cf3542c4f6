"""tanfang visitors invite / family invite."""

from __future__ import annotations

from click.testing import CliRunner

from tanfang.cli import cli
from data.models import Elder


def test_invites_from_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TANFANG_DATA_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    r = runner.invoke(cli, ["visitors", "invite", "--role", "grid_worker", "--area", "兰考县/城关镇", "--name", "张网格", "--json"])
    assert r.exit_code == 0, r.output
    assert len(__import__("json").loads(r.output)["invite_code"]) == 8
    r = runner.invoke(cli, ["visitors", "invite", "--role", "boss", "--name", "X"])
    assert r.exit_code == 1 and "未知角色" in r.output
    from tanfang.wiring import build_app
    from core.settings import load_settings
    app = build_app(load_settings())
    with app.ready_db().session() as s:
        s.add(Elder(id_number="410100194001010001", name="刘老汉", sex="M", county="兰考县", township="城关镇",
                    village="东街村", consent_share_family=False))
    app.close()
    r = runner.invoke(cli, ["family", "invite", "--elder", "1", "--name", "刘小", "--relation", "女儿"])
    assert r.exit_code == 1 and "没有同意" in r.output
