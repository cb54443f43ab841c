"""051 (issue 13, the gated backfill): what a batch no longer pays for changes no verdict. gcos._batch_limit reads
statement_timeout without pg_settings and keeps the same bounds (1 ms .. 5 s); gcos._batch_stops runs every stop of
the step and the plan and gives exactly 029's result (the exceptions in force are looked up only when a stop of the
step's own holds, the only case gcos._waive uses them). Waivers in a real batched run are tests/test_seams.py's."""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
import pytest
from conftest import MakeRole
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

pytestmark = pytest.mark.usefixtures("gcos_installed")


@pytest.mark.parametrize("limit", ["250ms", "1500ms", "5s", "5000ms"])
def test_a_batch_runs_under_any_statement_limit_from_1_ms_to_5_s(conn: psycopg.Connection[Any], limit: str) -> None:
    with conn.transaction():
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (limit,))
        conn.execute("SELECT gcos._batch_limit()")


@pytest.mark.parametrize("limit", ["0", "5001ms", "6s", "1min", "1h", "1d"])
def test_a_batch_without_a_limit_or_over_5_s_is_refused(conn: psycopg.Connection[Any], limit: str) -> None:
    with pytest.raises(pg_errors.InvalidParameterValue, match="5 s statement limit"), conn.transaction():
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (limit,))
        conn.execute("SELECT gcos._batch_limit()")


def test_1_ms_itself_is_within_the_bounds(conn: psycopg.Connection[Any]) -> None:
    """The lowest limit is accepted: the call either passes or is cancelled by that very limit, never refused."""
    with contextlib.suppress(pg_errors.QueryCanceled), conn.transaction():
        conn.execute("SELECT set_config('statement_timeout', '1ms', true)")
        conn.execute("SELECT gcos._batch_limit()")


STOPS = [
    {"name": "own, holds", "sql": "SELECT true"},
    {"name": "own, clear", "sql": "SELECT false"},
    {"max_new_tables": 0},
]
GLOBAL = [{"name": "plan's, holds", "sql": "SELECT count(*) > 0 FROM pg_catalog.pg_class WHERE relname = 'pg_class'"}]


@pytest.mark.parametrize(
    ("own", "plan"),
    [(STOPS, GLOBAL), (STOPS[1:], GLOBAL), (STOPS[1:], []), ([], GLOBAL), ([], [])],
    ids=["own-and-plan-hold", "plan-holds", "none-holds", "plan-only", "no-stops"],
)
def test_the_stops_of_a_batch_are_029s_every_stop_in_order(
    conn: psycopg.Connection[Any], own: list[dict[str, Any]], plan: list[dict[str, Any]]
) -> None:
    """The same JSON as 029's expression: every stop run, in order, held or not, none waived without exceptions."""
    spec, doc = Jsonb({"id": "OVERHEAD", "stop": own}), Jsonb({"id": "p", "global_stop": plan})
    old = conn.execute(
        "SELECT gcos._waive((SELECT COALESCE(jsonb_agg(gcos._kernel_stop(e, 0) ORDER BY o), '[]') "
        "FROM jsonb_array_elements(COALESCE(%(s)s -> 'stop', '[]') || COALESCE(%(p)s -> 'global_stop', '[]')) "
        "WITH ORDINALITY AS x(e, o)), 'stop', gcos._spec_exceptions(%(s)s), "
        "jsonb_array_length(COALESCE(%(s)s -> 'stop', '[]')))",
        {"s": spec, "p": doc},
    ).fetchone()
    new = conn.execute("SELECT gcos._batch_stops(%s, %s)", (spec, doc)).fetchone()
    assert old is not None and new is not None
    assert new[0] == old[0]
    assert [s["held"] for s in new[0]] == [s.get("sql") == "SELECT true" or s in plan for s in own + plan]
    assert all("waived" not in s for s in new[0])


def test_no_role_but_the_kernel_owner_calls_the_batch_stops(make_role: MakeRole) -> None:
    operator = make_role("operator", kind="human", roles=("operator",), grant=("operator",))
    with operator.connect() as other, pytest.raises(pg_errors.InsufficientPrivilege):
        other.execute("SELECT gcos._batch_stops('{}', '{}')")
