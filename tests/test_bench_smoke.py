"""The benchmarks that are quick at a small size run here, so that they keep working as the code
under them changes (bench/plan_month.py once broke unnoticed when ID and phone numbers were sealed
at rest). The long ones have their own tests: test_concurrent_calls_bench.py, test_lines_bench.py."""

from __future__ import annotations

import pytest

from tests.conftest import require_postgres


@pytest.mark.postgres
def test_plan_month_bench_plans_a_small_province_once():
    from bench.plan_month import run

    r = run(require_postgres(), 3000)
    # a tenth reached last week, a few in-person only, paused or without consent: most are due
    assert 0.8 * 3000 < r["attempts_written"] < 0.95 * 3000
    assert r["replan_new"] == 0  # the same day again plans nothing new
