"""Callable assertions for test_assertions.py, in a module pytest does not rewrite (so a bare
``assert`` behaves as in production code)."""

import datetime
import uuid
from decimal import Decimal
from typing import Any, Dict, List

import restorecheck as rc

SEEN: Dict[str, Any] = {}
KEPT: List[rc.Db] = []


def passes(db: rc.Db) -> None:
    n = db.scalar("select count(*) from registrations")
    assert n == 500, f"expected 500 registrations, saw {n}"


def returns_true(db: rc.Db) -> bool:
    return bool(db.scalar("select count(*) from registrations where email like $1", "user%") == 500)


def returns_false(db: rc.Db) -> bool:
    return False


def raises_assertion(db: rc.Db) -> None:
    n = db.scalar("select count(*) from registrations")
    assert n > 100000, f"only {n} registrations"


def bare_assert(db: rc.Db) -> None:
    n = db.scalar("select count(*) from registrations")
    assert n > 100000


def raises_other(db: rc.Db) -> None:
    settings: Dict[str, str] = {}
    settings["missing"]  # KeyError: an error, not a failure


def missing_table(db: rc.Db) -> None:
    db.scalar("select count(*) from no_such_table")


def bad_syntax(db: rc.Db) -> None:
    db.query("selec 1")


def returns_number(db: rc.Db) -> Any:
    return 42


def facts(db: rc.Db) -> None:
    SEEN["facts"] = {
        "backup_id": db.backup_id,
        "recovery_end_lsn": db.recovery_end_lsn,
        "recovery_end_time": db.recovery_end_time,
        "pg_version": db.pg_version,
        "database": db.database,
        "timeline": db.timeline,
        "dsn": db.dsn,
        "backup_taken_at": db.backup_taken_at,
    }
    KEPT.append(db)


def conversions(db: rc.Db) -> None:
    SEEN["row"] = db.query(
        "select true, 1::int2, 2::int4, 3::int8, 1.5::float4, 2.25::float8, 12.3400::numeric,"
        " 'txt'::text, 'vc'::varchar, 'nm'::name, 'bp'::char(3),"
        " timestamptz '2024-05-06 07:08:09.123456+02', timestamp '2024-05-06 07:08:09', date '2024-05-06',"
        " '{\"a\": [1, 2.5, null, 12345678901234567890]}'::json, '{\"b\": true}'::jsonb,"
        " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, null::int4, interval '1 day 2 hours',"
        " inet '10.1.2.3', array[1, 2, 3], 'infinity'::timestamptz, 'x'::\"char\", 'NaN'::float8"
    )
    SEEN["numerics"] = db.query(
        "select v, v::text from (values (0::numeric), (1.5), (-12.3400), (0.000001), (1e20), (10000), (99990000),"
        " (123456789.987654321), (-0.5), ('NaN'), (0.00012), (1e-30)) t(v)"
    )
    SEEN["params"] = db.query(
        "select $1::int2, $2::int4, $3::int8, $4::float8, $5::text, $6::bool, $7::numeric, $8::timestamptz,"
        " $9::date, $10::jsonb, $11::uuid, $12::int4, $13::timestamp, $14::interval, $15::numeric",
        7,
        70000,
        2**40,
        0.5,
        "x",
        True,
        Decimal("-1.25"),
        datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        datetime.date(2024, 1, 2),
        {"k": [1, "two"]},
        uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        None,
        datetime.datetime(2024, 1, 2, 3, 4, 5),
        datetime.timedelta(hours=1, seconds=1),
        "3.5",
    )
    SEEN["where"] = db.scalar("select count(*) from registrations where id <= $1 and email <> $2", 10, "nobody")
    SEEN["scalar_none"] = db.scalar("select 1 where false")
    SEEN["bytea"] = db.scalar("select $1::bytea", b"\x00\xff")
    try:
        db.query("select $1::int2", 70000)
    except ValueError as e:
        SEEN["overflow"] = str(e)
    try:
        db.query("select $1::int4", "abc")
    except rc.QueryError as e:
        SEEN["bad_text"] = (e.sqlstate, str(e))
    try:
        db.query("select $1::int4", 1, 2)
    except TypeError as e:
        SEEN["count_mismatch"] = str(e)


ALL = [
    passes,
    returns_true,
    returns_false,
    raises_assertion,
    bare_assert,
    raises_other,
    missing_table,
    bad_syntax,
    returns_number,
    facts,
    conversions,
]
