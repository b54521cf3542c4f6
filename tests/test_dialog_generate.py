"""The Rasa YAML is generated (dialogs/generate/): the files in the repository are what the sources give."""

from __future__ import annotations

import yaml

from dialogs.generate import render_all, stale


def test_generated_yaml_is_current():
    assert [str(p) for p in stale()] == [], "run `python -m dialogs.generate` and commit the result"


def test_generated_files_are_valid_yaml_without_anchors():
    for path, text in render_all().items():
        assert "&id0" not in text and "*id0" not in text, path
        assert yaml.safe_load(text)["version"] == "3.1", path


def test_generating_twice_gives_the_same_text():
    assert render_all() == render_all()  # seeded: no drift between runs


def test_check_mode_names_a_stale_file(tmp_path, monkeypatch):
    import dialogs.generate as gen

    fake = tmp_path / "nlu.yml"
    fake.write_text("version: '3.1'\n", encoding="utf-8")
    monkeypatch.setattr(gen, "render_all", lambda: {fake: "version: '3.1'\nnlu: []\n"})
    assert gen.stale() == [fake]
    from dialogs.generate.__main__ import main

    assert main(["--check"]) == 1
    assert fake.read_text(encoding="utf-8") == "version: '3.1'\n"  # --check writes nothing
    assert main([]) == 0 and gen.stale() == []
