"""The generators of the Rasa project's YAML (see README.md here): one source of truth.

``render_all()`` gives each generated file's path and text; ``write_all()`` writes them;
``stale()`` lists the files on disk that differ from what the sources give.
"""

from __future__ import annotations

from pathlib import Path

import yaml

DIALOGS = Path(__file__).resolve().parents[1]


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data):  # shared step lists are written out in full, as a person would
        return True


def dump(data) -> str:
    """YAML as the Rasa files are written: unicode, keys in order, no anchors."""
    return yaml.dump(data, Dumper=_NoAliases, allow_unicode=True, sort_keys=False, width=200)


def render_all() -> dict[Path, str]:
    from dialogs.generate.project import render_domain, render_nlu, render_rules, render_synonyms
    from dialogs.generate.stories import render_stories

    return {DIALOGS / "data" / "nlu.yml": render_nlu(), DIALOGS / "data" / "synonyms.yml": render_synonyms(),
            DIALOGS / "domain.yml": render_domain(), DIALOGS / "data" / "rules.yml": render_rules(),
            DIALOGS / "tests" / "test_stories.yml": render_stories()}


def stale() -> list[Path]:
    """The generated files whose text on disk is not what the sources give now."""
    return [p for p, text in render_all().items()
            if not p.is_file() or p.read_text(encoding="utf-8") != text]


def write_all() -> list[Path]:
    """Write the files that changed; return them."""
    changed = []
    for path, text in render_all().items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed
