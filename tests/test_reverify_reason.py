"""Gate 3's reason, decided in the database (gcos/sql/015_closed_ledger.sql), shows an expectation as a spec
writes it (spec.Expectation.describe: "expected gte 1000000"), not as JSON ("expected {"gte": 1000000}")."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from gcos.spec import Expectation

EXPECTATIONS: list[Any] = [{"gte": 1000000}, 5, "ready", {"in": [1, 2]}, {"between": [1, 5]}, None, True]


def test_a_failed_reverify_check_names_its_expectation_as_written(
    conn: psycopg.Connection[Any], gcos_installed: None
) -> None:
    reasons = []
    for expect in EXPECTATIONS:
        context = {
            "step_id": "SB-1",
            "action": "commit",
            "spec": {"reverify": [{"name": "rows"}]},
            "world": {"reverify": [{"name": "rows", "expected": expect, "actual": 7, "ok": False}]},
        }
        row = conn.execute("SELECT gcos._gate_reverify(%s)", (Jsonb(context),)).fetchone()
        assert row is not None
        assert (row[0]["number"], row[0]["allow"]) == (3, False)
        assert f"expected {Expectation.parse(expect).describe()}, got 7" in row[0]["reason"], row[0]["reason"]
        reasons.append(row[0]["reason"])
    assert "expected gte 1000000, got 7" in reasons[0]
