#!/usr/bin/env python3
"""A nightly restore test as an ops team would write it with the Python binding.

    ops_script.py /backups/base [--wal-archive /backups/wal] [--database app] [--json report.json]

Restores the newest backup under the given folder, checks the application's data with SQL and
Python assertions, prints the text report (what lands in the cron mail), optionally writes the
JSON report for monitoring, and exits like the CLI: 0 passed, 1 a check failed, 2 could not run.
``RESTORECHECK_WORK_DIR`` picks where the throwaway server lives (default ``$TMPDIR`` or /var/tmp).
"""

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

import restorecheck as rc


def registrations_keep_coming(db: rc.Db) -> None:
    """Sign-ups in the last week: a restored copy with none is a copy of a dead system."""
    n = db.scalar("select count(*) from registrations where created_at > now() - interval '7 days'")
    assert n > 100, f"only {n} signups in the last week"


def emails_are_unique(db: rc.Db) -> bool:
    """No duplicated e-mail addresses (an index that silently broke would allow them)."""
    duplicates = db.query("select email, count(*) from registrations group by email having count(*) > $1 limit 5", 1)
    if duplicates:
        print(f"duplicated e-mails, e.g. {duplicates}", file=sys.stderr)
    return not duplicates


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the check and returns the exit code."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("backups", type=Path, help="a pg_basebackup backup, or a folder of them")
    p.add_argument("--wal-archive", type=Path, help="folder of archived WAL segments")
    p.add_argument("--database", default="app", help="database the assertions run in")
    p.add_argument("--json", type=Path, help="write the JSON report here")
    args = p.parse_args(argv)

    try:
        check = rc.Check(
            name="nightly-restore",
            source=rc.sources.BaseBackup(args.backups, wal_archive=args.wal_archive),
            target=rc.targets.Local(),
            database=args.database,
            max_backup_age="26h",
            timeout="30m",
            assertions=[
                rc.sql("select count(1) from registrations", min=1, name="registrations present"),
                rc.sql("select max(created_at) from registrations", max_age="24h", name="recent registrations"),
                registrations_keep_coming,
                emails_are_unique,
            ],
        )
        report = check.run(work_dir=os.environ.get("RESTORECHECK_WORK_DIR"))
    except rc.RestoreCheckError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.to_text(), end="")
    if args.json:
        args.json.write_text(report.to_json())
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
