"""Whole runs through the binding: a passing check, a config file, asyncio, the report as JSON,
and the example ops script."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import restorecheck as rc
from conftest import postgres_processes_under

REPO = Path(__file__).resolve().parents[2]


def signups_look_sane(db: rc.Db) -> None:
    n = db.scalar("select count(*) from registrations where created_at > now() - interval '7 days'")
    assert n > 100, f"only {n} signups in the last week"


def check(backup: Path) -> rc.Check:
    return rc.Check(
        name="app",
        source=rc.sources.BaseBackup(backup),
        target=rc.targets.Local(),
        database="app",
        assertions=[
            rc.sql("select count(1) from registrations", min=1),
            rc.sql("select max(created_at) from registrations", max_age="24h"),
            signups_look_sane,
        ],
    )


def assert_clean(work: Path) -> None:
    assert list(work.iterdir()) == [], "work dir left behind"
    assert postgres_processes_under(work) == [], "server left running"


def test_passing_check_and_json_round_trip(good_backup: Path, work: Path) -> None:
    report = check(good_backup).run(work_dir=work)
    assert_clean(work)
    assert report.passed, report.to_text()
    assert report.verdict == "pass" and report.exit_code == 0
    c = report.check("app")
    assert c.passed and c.failure is None
    assert all(a.verdict == "pass" for a in c.assertions), c.assertions
    assert c.assertions[-1].name == "signups_look_sane"
    assert c.backup["id"] == "b1" and c.backup["pg_major"] == 15
    assert c.recovery["server_version"].startswith("15")
    # The JSON contract, and the dict mirrors it exactly.
    doc = json.loads(report.to_json())
    assert doc == report.to_dict()
    assert doc["version"] == 1 and doc["verdict"] == "pass" and doc["run_id"] == report.run_id
    assert doc["checks"][0]["assertions"][-3]["observed"] == 500
    for phase in ("select", "fetch", "restore", "recovery", "assert", "teardown", "total"):
        assert isinstance(doc["checks"][0]["timings"][phase], float), phase
    assert report.timings["total"] == doc["checks"][0]["timings"]["total"]
    assert report.to_text().startswith("PASS  app in ")
    mutated = report.to_dict()
    mutated["verdict"] = "changed"
    assert report.to_dict()["verdict"] == "pass", "to_dict returns a copy"


def test_source_lists_its_backups(good_backup: Path) -> None:
    listed = rc.sources.BaseBackup(good_backup).backups()
    assert [b["id"] for b in listed] == ["b1"]
    assert listed[0]["kind"] == "tar" and listed[0]["taken_at"] is not None


def test_run_config(good_backup: Path, work: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "restorecheck.toml"
    cfg.write_text(
        f"""work_dir = "{work}"

[[check]]
name = "from-file"
database = "app"
max_backup_age = "26h"

[check.source]
kind = "basebackup"
path = "{good_backup}"

[[check.assert]]
sql = "select count(1) from registrations"
min = 1

[[check.assert]]
sql = "select count(1) from registrations"
equals = 499
name = "off by one"
"""
    )
    report = rc.run_config(cfg)
    assert_clean(work)
    assert report.verdict == "fail" and report.exit_code == 1
    c = report.checks[0]
    assert c.name == "from-file"
    by_name = {a.name: a for a in c.assertions}
    assert c.assertions[0].name == "max_backup_age"
    assert [a.name for a in c.assertions][-2:] == ["select count(1) from registrations", "off by one"]
    assert by_name["select count(1) from registrations"].verdict == "pass"
    assert by_name["off by one"].verdict == "fail"
    assert by_name["off by one"].message == "observed 500, expected 499"
    assert [a.name for a in c.assertions if a.verdict != "pass"] == ["off by one"]


def test_run_async(good_backup: Path, work: Path) -> None:
    async def main() -> rc.Report:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.ensure_future(ticker())
        report = await check(good_backup).run_async(work_dir=work)
        t.cancel()
        assert ticks > 10, "the event loop was blocked during the run"
        return report

    report = asyncio.run(main())
    assert_clean(work)
    assert report.passed, report.to_text()


def test_example_ops_script(good_backup: Path, work: Path, tmp_path: Path) -> None:
    out_json = tmp_path / "report.json"
    env = {**os.environ, "RESTORECHECK_WORK_DIR": str(work)}
    ok = subprocess.run(
        [sys.executable, str(REPO / "examples" / "ops_script.py"), str(good_backup), "--database", "app",
         "--json", str(out_json)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS  nightly-restore" in ok.stdout
    assert json.loads(out_json.read_text())["verdict"] == "pass"
    assert_clean(work)
    # A database without the expected data: the script exits 1 like the CLI.
    bad = subprocess.run(
        [sys.executable, str(REPO / "examples" / "ops_script.py"), str(good_backup), "--database", "postgres"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "FAIL  nightly-restore" in bad.stdout
    assert_clean(work)
