"""Python callable assertions and TOML assertion kinds on a real restored backup.

One restore serves every test here (a session fixture runs one check with all the assertions),
each test then looks at its own assertion's result.
"""

import datetime
from decimal import Decimal
from pathlib import Path

import pytest

import restorecheck as rc
from conftest import postgres_processes_under
from sample_assertions import ALL, KEPT, SEEN


@pytest.fixture(scope="module")
def mixed(good_backup: Path, root: Path) -> rc.Report:
    work = root / "work-mixed"
    work.mkdir()
    work.chmod(0o755)
    check = rc.Check(
        name="mixed",
        source=rc.sources.BaseBackup(good_backup),
        target=rc.targets.Local(),
        database="app",
        max_backup_age="1h",
        timeout=datetime.timedelta(minutes=5),
        assertions=[
            rc.sql("select count(1) from registrations", min=1, name="count min ok"),
            rc.sql("select count(1) from registrations", min=1000, name="count min too high"),
            rc.sql("select max(created_at) from registrations", max_age="24h", name="fresh"),
            rc.sql("select timestamptz '2001-01-01'", max_age=datetime.timedelta(hours=24), name="stale"),
            rc.assertion("sql", sql="select 'x'", equals="x", name="generic kind"),
            *ALL,
        ],
    )
    report = check.run(work_dir=work)
    assert list(work.iterdir()) == [], "work dir left behind"
    assert postgres_processes_under(work) == []
    return report


def result(report: rc.Report, name: str) -> rc.AssertionResult:
    by_name = {a.name: a for a in report.checks[0].assertions}
    assert name in by_name, f"no assertion {name!r} in {list(by_name)}"
    return by_name[name]


def test_restore_ran_every_assertion_in_order(mixed: rc.Report) -> None:
    names = [a.name for a in mixed.checks[0].assertions]
    assert names[0] == "max_backup_age"
    mine = ["count min ok", "count min too high", "fresh", "stale", "generic kind"] + [f.__name__ for f in ALL]
    # Check-level assertions (max_backup_age, the core's integrity checks) come first.
    assert names[-len(mine):] == mine, names
    assert mixed.checks[0].failure is not None
    assert mixed.checks[0].failure["phase"] == "assert"
    assert mixed.verdict == "fail" and not mixed.passed and mixed.exit_code == 1


def test_python_assertion_that_passes(mixed: rc.Report) -> None:
    for name in ("passes", "returns_true", "facts", "conversions"):
        r = result(mixed, name)
        assert r.verdict == "pass", (name, r.message)
        assert r.message is None


def test_python_assertion_returning_false_fails(mixed: rc.Report) -> None:
    r = result(mixed, "returns_false")
    assert r.verdict == "fail"
    assert r.message == "returned False"


def test_assertion_error_fails_with_its_message(mixed: rc.Report) -> None:
    r = result(mixed, "raises_assertion")
    assert r.verdict == "fail"
    assert r.message == "only 500 registrations"
    bare = result(mixed, "bare_assert")
    assert bare.verdict == "fail"
    assert bare.message is not None and bare.message.startswith("assert n > 100000 (")
    assert "sample_assertions.py:" in bare.message


def test_other_exception_is_an_error_with_traceback(mixed: rc.Report) -> None:
    r = result(mixed, "raises_other")
    assert r.verdict == "error"
    assert r.message is not None
    assert "Traceback (most recent call last)" in r.message
    assert "KeyError: 'missing'" in r.message
    assert "in raises_other" in r.message
    n = result(mixed, "returns_number")
    assert n.verdict == "error" and n.message is not None and "returned 42 (int)" in n.message


def test_query_errors_fail_on_missing_data_and_error_otherwise(mixed: rc.Report) -> None:
    missing = result(mixed, "missing_table")
    assert missing.verdict == "fail", missing.message
    assert missing.message is not None and "no_such_table" in missing.message
    syntax = result(mixed, "bad_syntax")
    assert syntax.verdict == "error", syntax.message
    assert syntax.message is not None and "QueryError" in syntax.message and "syntax error" in syntax.message


def test_sql_min_and_max_age(mixed: rc.Report) -> None:
    assert result(mixed, "count min ok").verdict == "pass"
    assert result(mixed, "count min ok").observed == 500
    low = result(mixed, "count min too high")
    assert low.verdict == "fail" and low.message == "observed 500, expected at least 1000"
    fresh = result(mixed, "fresh")
    assert fresh.verdict == "pass", fresh.message
    stale = result(mixed, "stale")
    assert stale.verdict == "fail"
    assert stale.expected == "younger than 1day"
    assert result(mixed, "generic kind").verdict == "pass"
    assert result(mixed, "max_backup_age").verdict == "pass"


def test_db_facts_match_the_report(mixed: rc.Report) -> None:
    f = SEEN["facts"]
    check = mixed.checks[0]
    assert f["backup_id"] == check.backup["id"] == "b1"
    assert f["recovery_end_lsn"] == check.recovery["end_lsn"] and "/" in f["recovery_end_lsn"]
    assert f["pg_version"] == check.recovery["server_version"] and f["pg_version"].startswith("15")
    assert f["database"] == "app"
    assert f["timeline"] == check.recovery["timeline"]
    assert f["recovery_end_time"] is None or isinstance(f["recovery_end_time"], datetime.datetime)
    assert isinstance(f["backup_taken_at"], datetime.datetime) and f["backup_taken_at"].tzinfo is not None
    assert "dbname=app" in f["dsn"]


def test_db_is_unusable_after_its_assertion(mixed: rc.Report) -> None:
    assert KEPT, "facts() did not run"
    with pytest.raises(rc.RestoreCheckError, match="gone"):
        KEPT[0].query("select 1")


def test_result_columns_are_converted_by_type(mixed: rc.Report) -> None:
    (row,) = SEEN["row"]
    utc = datetime.timezone.utc
    assert row[:7] == (True, 1, 2, 3, 1.5, 2.25, Decimal("12.3400"))
    assert type(row[0]) is bool and type(row[1]) is int and type(row[6]) is Decimal
    assert row[7:11] == ("txt", "vc", "nm", "bp ")
    assert row[11] == datetime.datetime(2024, 5, 6, 5, 8, 9, 123456, tzinfo=utc)
    assert row[11].tzinfo is not None
    assert row[12] == datetime.datetime(2024, 5, 6, 7, 8, 9) and row[12].tzinfo is None
    assert row[13] == datetime.date(2024, 5, 6) and type(row[13]) is datetime.date
    assert row[14] == {"a": [1, 2.5, None, 12345678901234567890]}
    assert row[15] == {"b": True}
    assert row[16] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert row[17] is None
    assert row[18:22] == ("1 day 02:00:00", "10.1.2.3", "{1,2,3}", "infinity")  # output functions
    assert row[22] == "x"
    assert row[23] != row[23]  # NaN


def test_numeric_is_exact(mixed: rc.Report) -> None:
    rows = SEEN["numerics"]
    assert len(rows) == 12
    for value, text in rows:
        assert isinstance(value, Decimal)
        if text == "NaN":
            assert value.is_nan()
        else:
            assert value.as_tuple() == Decimal(text).as_tuple(), (value, text)  # value and scale


def test_parameters_are_converted_to_the_declared_types(mixed: rc.Report) -> None:
    (row,) = SEEN["params"]
    assert row[:7] == (7, 70000, 2**40, 0.5, "x", True, Decimal("-1.25"))
    assert row[7] == datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert row[8] == datetime.date(2024, 1, 2)
    assert row[9] == {"k": [1, "two"]}
    assert row[10] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert row[11] is None
    assert row[12] == datetime.datetime(2024, 1, 2, 3, 4, 5)
    assert row[13] == "01:00:01"
    assert row[14] == Decimal("3.5")
    assert SEEN["where"] == 10
    assert SEEN["scalar_none"] is None
    assert SEEN["bytea"] == "\\x00ff"  # bytea: no native conversion, so its PostgreSQL text
    assert "does not fit" in SEEN["overflow"] and "int2" in SEEN["overflow"]
    assert SEEN["bad_text"][0] == "22P02", SEEN["bad_text"]
    assert "1 parameters" in SEEN["count_mismatch"] and "2 values" in SEEN["count_mismatch"]
