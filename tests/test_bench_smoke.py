"""The benchmarks that are quick at a small size run here, so that they keep working as the code
under them changes (bench/plan_month.py once broke unnoticed when ID and phone numbers were sealed
at rest). The long ones have their own tests: test_concurrent_calls_bench.py, test_lines_bench.py."""

from __future__ import annotations

import os

import pytest

from tests.conftest import PG_URL


@pytest.mark.postgres
def test_plan_month_bench_plans_a_small_province_once():
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("TANFANG_TEST_POSTGRES_URL is not set under CI")
        pytest.skip("PostgreSQL not configured (scripts/postgres.sh)")
    from bench.plan_month import run

    r = run(PG_URL, 3000)
    # a tenth reached last week, a few in-person only, paused or without consent: most are due
    assert 0.8 * 3000 < r["attempts_written"] < 0.95 * 3000
    assert r["replan_new"] == 0  # the same day again plans nothing new
