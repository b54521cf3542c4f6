"""A real Rasa server for the tests, started once per session (pytest plugin).

Use with ``pytest_plugins = ["tests.rasa_fixtures"]``. ``rasa_server`` trains the real
``dialogs/`` project (or reuses the cached model, see ``.ci/setup.d/20-rasa.sh``) and starts
``rasa run`` + the action server on free ports with a throw-away data folder and SQLite database,
so a developer's own running Rasa is never touched.
"""

from __future__ import annotations

import pytest

from core.settings import load_settings
from sim.net import free_port  # noqa: F401 — the tests take it from here too


def rasa_test_env(tmp_dir, port: int, action_port: int) -> dict[str, str]:
    return {
        "TANFANG_DATA_DIR": str(tmp_dir / "var"),
        "TANFANG_OUTPUT_DIR": str(tmp_dir / "out"),
        "TANFANG_DATABASE_URL": f"sqlite:///{tmp_dir / 'tanfang.db'}",
        "TANFANG_RASA__PORT": str(port),
        "TANFANG_RASA__ACTION_PORT": str(action_port),
    }


@pytest.fixture(scope="session")
def rasa_server(tmp_path_factory):
    """The running ``EmbeddedRasa`` (``.url``, ``.settings``, ``.model``) for the real project."""
    from data.db import Database
    from dialogs.runtime import DIALOGS_DIR, EmbeddedRasa

    if not (DIALOGS_DIR / "config.yml").is_file():
        pytest.skip("the Rasa project dialogs/ has no config.yml yet")
    tmp = tmp_path_factory.mktemp("rasa")
    env = rasa_test_env(tmp, free_port(), free_port())
    settings = load_settings(env=env)
    settings.ensure_dirs()
    db = Database(settings.database_url)
    db.upgrade()  # the action server reads/writes the app's database
    db.dispose()
    rasa = EmbeddedRasa(settings, log=lambda msg: print(msg))
    rasa.env = env  # type: ignore[attr-defined]
    rasa.start()
    try:
        yield rasa
    finally:
        rasa.stop()
