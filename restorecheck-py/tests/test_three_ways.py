"""One check spelled three ways — TOML through the CLI, the Rust builder (the README's library
example), Python keyword arguments — gives the same report, field by field (timings aside).
All three fill the core's ``CheckSpec`` and build the check with ``CheckSpec::build``; before it,
``rto`` only reached the CLI's verdict and ``rc.Check(..., rto="1ms")`` passed."""

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest

import restorecheck as rc
from conftest import postgres_processes_under

SQL = "select count(1) from registrations"


def programs() -> Dict[str, Path]:
    cli = os.environ.get("RESTORECHECK_CLI")
    if not cli:
        pytest.fail("RESTORECHECK_CLI is not set (scripts/test.sh sets it to the built CLI)")
    found = {"cli": Path(cli), "library": Path(cli).parent / "examples" / "library"}
    for name, path in found.items():
        if not path.exists():
            pytest.fail(f"{name} not built at {path} (cargo test --workspace builds both)")
    return found


def normalized(doc: Dict[str, Any]) -> Dict[str, Any]:
    """The report without what legitimately differs between two runs: ids, clock times,
    durations, measured ages and the work dir's run-specific name in notes."""
    run_id = doc.pop("run_id")
    for key in ("started_at", "finished_at", "timings", "duration_seconds"):
        doc.pop(key, None)
    for c in doc["checks"]:
        c.pop("timings", None)
        # The backup's age is measured at each run's own clock.
        c["backup"].pop("age_seconds", None)
        for a in c["assertions"]:
            # Built-in checks (amcheck, checksums) report how long they took.
            if isinstance(a.get("observed"), dict):
                a["observed"].pop("seconds", None)
            if a["name"] in ("rto", "max_backup_age"):
                a.pop("observed", None)
                if a.get("message"):
                    a["message"] = "<timing>"
        if c.get("failure") and c["failure"]["message"].startswith("the restore took"):
            c["failure"]["message"] = "<timing>"
        c["notes"] = [n.replace(run_id, "<run>") for n in c["notes"] if "port" not in n]
        c["warnings"] = [w.replace(run_id, "<run>") for w in c["warnings"]]
        c["recovery"].pop("last_replayed_at", None)
    return doc


@pytest.mark.parametrize("rto,verdict", [("1h", "pass"), ("1ms", "fail")])
def test_one_check_spelled_three_ways_reaches_the_same_report(
    good_backup: Path, work: Path, tmp_path: Path, rto: str, verdict: str
) -> None:
    progs = programs()
    cfg = tmp_path / "restorecheck.toml"
    cfg.write_text(
        f"""[[check]]
name = "app"
database = "app"
max_backup_age = "26h"
rto = "{rto}"

[check.source]
kind = "basebackup"
path = "{good_backup}"

[[check.assert]]
sql = "{SQL}"
min = 1
"""
    )
    env = {**os.environ, "TMPDIR": str(work)}
    reports: Dict[str, Dict[str, Any]] = {}
    out = subprocess.run(
        [str(progs["cli"]), "run", "-c", str(cfg), "--format", "json", "--no-history", "--work-dir", str(work)],
        capture_output=True, text=True, env=env,
    )
    assert out.returncode in (0, 1), out.stderr
    reports["toml"] = json.loads(out.stdout)
    out = subprocess.run(
        [str(progs["library"]), str(good_backup), "--rto", rto, "--json"], capture_output=True, text=True, env=env
    )
    assert out.returncode in (0, 1), out.stderr
    reports["rust"] = json.loads(out.stdout)
    check = rc.Check(
        "app",
        rc.sources.BaseBackup(good_backup),
        database="app",
        max_backup_age="26h",
        rto=rto,
        assertions=[rc.sql(SQL, min=1)],
    )
    reports["python"] = json.loads(check.run(work_dir=work).to_json())
    assert list(work.iterdir()) == [] and postgres_processes_under(work) == []

    for name, doc in reports.items():
        assert doc["verdict"] == verdict, f"{name}: {doc['checks'][0].get('failure')}"
        names: List[str] = [a["name"] for a in doc["checks"][0]["assertions"]]
        assert names == ["max_backup_age", "amcheck", SQL, "checksums", "rto"] or names == [
            "max_backup_age", "amcheck", SQL, "rto"
        ], f"{name}: {names}"
    expected = normalized(reports["toml"])
    assert normalized(reports["rust"]) == expected
    assert normalized(reports["python"]) == expected
