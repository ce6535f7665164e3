"""Ctrl-C and asyncio cancellation during recovery: the run is cancelled, the restored server is
stopped and the work dir removed before the interrupt reaches the caller."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Tuple

import pytest

import restorecheck as rc
from conftest import postgres_processes_under

SCRIPT = """
import sys
import restorecheck as rc

backup, archive, work = sys.argv[1:4]
check = rc.Check("slow", rc.sources.BaseBackup(backup, wal_archive=archive), database="app",
                 assertions=[rc.sql("select count(*) from filler", min=1)])
print("STARTED", flush=True)
try:
    report = check.run(work_dir=work)
except KeyboardInterrupt:
    print("KEYBOARD_INTERRUPT", flush=True)
    sys.exit(42)
print("RUN_RETURNED", report.verdict, flush=True)
"""


def replaying(work: Path) -> bool:
    """True once a work dir's server log shows archived WAL being restored."""
    for d in work.iterdir() if work.exists() else []:
        try:
            if "restored log file" in (d / "postgres.log").read_text(errors="replace"):
                return True
        except OSError:
            pass
    return False


def wait_until_replaying(work: Path, alive: "Optional[subprocess.Popen[str]]" = None, limit: float = 120) -> None:
    until = time.monotonic() + limit
    while not replaying(work):
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"the run ended before WAL replay: {alive.communicate()}")
        if time.monotonic() > until:
            pytest.fail("the restore never reached WAL replay")
        time.sleep(0.02)


def test_ctrl_c_during_recovery(slow_backup: Tuple[Path, Path], work: Path, tmp_path: Path) -> None:
    backup, archive = slow_backup
    script = tmp_path / "interrupt_me.py"
    script.write_text(SCRIPT)
    child = subprocess.Popen(
        [sys.executable, str(script), str(backup), str(archive), str(work)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_until_replaying(work, child)
        assert postgres_processes_under(work), "no server running during recovery"
        sent = time.monotonic()
        os.kill(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=150)
    finally:
        if child.poll() is None:
            child.kill()
    took = time.monotonic() - sent
    assert child.returncode == 42, f"expected KeyboardInterrupt from run()\n{out}\n{err}"
    assert "KEYBOARD_INTERRUPT" in out and "RUN_RETURNED" not in out
    assert postgres_processes_under(work) == [], "a postgres process survived Ctrl-C"
    assert list(work.iterdir()) == [], "work dir left behind"
    assert took < 60, f"cancellation took {took:.1f}s"


def test_cancelling_run_async_tears_down(slow_backup: Tuple[Path, Path], work: Path) -> None:
    backup, archive = slow_backup
    check = rc.Check("slow", rc.sources.BaseBackup(backup, wal_archive=archive), database="app")

    async def main() -> None:
        task = asyncio.ensure_future(check.run_async(work_dir=work))
        until = time.monotonic() + 120
        while not replaying(work):
            assert not task.done(), "the run ended before WAL replay"
            assert time.monotonic() < until, "the restore never reached WAL replay"
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # By the time the cancellation arrives, teardown has finished.
        assert postgres_processes_under(work) == [], "a postgres process survived cancellation"
        assert list(work.iterdir()) == [], "work dir left behind"

    asyncio.run(main())


def test_timeout_is_a_report_and_still_tears_down(slow_backup: Tuple[Path, Path], work: Path) -> None:
    backup, archive = slow_backup
    # An assertion that sleeps far past the deadline: the timeout fires whatever the machine's speed.
    check = rc.Check(
        "slow",
        rc.sources.BaseBackup(backup, wal_archive=archive),
        database="app",
        timeout="8s",
        assertions=[rc.sql("select count(*) from (select pg_sleep(60)) s", min=1)],
    )
    report = check.run(work_dir=work)
    assert report.verdict == "error" and report.exit_code == 2
    failure = report.checks[0].failure
    assert failure is not None and failure["message"].startswith("timed out after 8s during the "), failure
    assert postgres_processes_under(work) == [], "a postgres process survived the timeout"
    assert list(work.iterdir()) == [], "work dir left behind"
