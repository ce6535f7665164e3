"""Fixtures: a real PostgreSQL 15 cluster with WAL archiving and real pg_basebackup backups.

PostgreSQL refuses to run as root, so every server program runs as the ``postgres`` OS user
(``runuser``) in folders under /var/tmp that it owns; sockets live in a private folder and the
server does not listen on TCP.
"""

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

BIN = Path(os.environ.get("RESTORECHECK_PG_BIN", "/usr/lib/postgresql/15/bin"))
ROOT = Path("/var/tmp/restorecheck-pytest")


def _as_postgres(args: List[str]) -> List[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


class Cluster:
    """A running PostgreSQL cluster that archives its WAL."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pgdata = root / "pgdata"
        self.archive = root / "archive"
        self.sock = root / "sock"
        self.backups = root / "backups"
        self.port = 30000 + os.getpid() % 20000

    def run(self, args: List[str], input: Optional[str] = None) -> str:
        out = subprocess.run(
            _as_postgres(args),
            input=input,
            capture_output=True,
            text=True,
            cwd=str(self.root),
            env={**os.environ, "LC_ALL": "C"},
        )
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def create(self) -> None:
        for d in (self.root, self.archive, self.sock, self.backups):
            d.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for d in (self.root, self.archive, self.sock, self.backups):
                os.chown(d, pw.pw_uid, pw.pw_gid)
        self.run([str(BIN / "initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C"])
        conf = [
            f"port = {self.port}",
            "listen_addresses = ''",
            f"unix_socket_directories = '{self.sock}'",
            "wal_level = replica",
            "archive_mode = on",
            f"archive_command = 'test ! -f {self.archive}/%f && cp %p {self.archive}/%f && chmod 0644 {self.archive}/%f'",
            # (the server archives files 0600; the restored server runs as its own OS user)
            "max_wal_senders = 5",
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "shared_buffers = 64MB",
            "max_connections = 40",
        ]
        with open(self.pgdata / "postgresql.conf", "a") as f:
            f.write("\n" + "\n".join(conf) + "\n")
        self.run([str(BIN / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.root / "server.log"), "-w", "start"])

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(BIN / "pg_ctl"), "-D", str(self.pgdata), "-m", "immediate", "-w", "stop"]),
                       capture_output=True)

    def sql(self, sql: str, db: str = "postgres") -> str:
        return self.run([str(BIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.sock),
                         "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql]).strip()

    def switch_and_archive(self) -> None:
        seg = self.sql("select pg_walfile_name(pg_switch_wal())")
        until = time.monotonic() + 60
        while not (self.archive / seg).exists():
            if time.monotonic() > until:
                raise RuntimeError(f"segment {seg} was not archived within 60s")
            time.sleep(0.05)

    def basebackup(self, folder: str, name: str, options: List[str]) -> Path:
        parent = self.backups / folder
        parent.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(parent, pw.pw_uid, pw.pw_gid)
        dest = parent / name
        self.run([str(BIN / "pg_basebackup"), "-D", str(dest), "-h", str(self.sock), "-p", str(self.port),
                  "-U", "postgres", "-c", "fast", "--no-sync", "-l", f"pytest {name}", *options])
        return parent


@pytest.fixture(scope="session")
def root() -> Iterator[Path]:
    """A private folder under /var/tmp (mode 0755, reachable by the server's OS user)."""
    path = ROOT / str(os.getpid())
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    for p in (ROOT, path):
        os.chmod(p, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster(root: Path) -> Iterator[Cluster]:
    """A running cluster with database ``app``: 500 fresh registrations and a table of many types."""
    if not (BIN / "postgres").exists():
        pytest.fail(f"PostgreSQL 15 binaries not found in {BIN} (scripts/setup.sh installs them)")
    c = Cluster(root / "cluster")
    c.create()
    c.sql("create database app")
    c.sql(
        "create table registrations (id bigserial primary key, email text not null,"
        " created_at timestamptz not null default now());"
        " insert into registrations (email) select 'user' || g || '@example.com' from generate_series(1, 500) g;",
        db="app",
    )
    yield c
    c.stop()


@pytest.fixture(scope="session")
def good_backup(cluster: Cluster) -> Path:
    """A folder holding one self-contained tar backup (``-Ft -Xstream``) of the cluster."""
    return cluster.basebackup("good", "b1", ["-Ft", "-Xstream"])


@pytest.fixture(scope="session")
def slow_backup(cluster: Cluster) -> Tuple[Path, Path]:
    """A ``-Xnone`` backup plus lots of archived WAL to replay: (backup folder, WAL archive)."""
    parent = cluster.basebackup("slow", "b2", ["-Ft", "-Xnone"])
    cluster.sql("create table filler (id bigint, payload text)", db="app")
    for _ in range(8):
        cluster.sql("insert into filler select g, md5(g::text) || md5((g+1)::text) from generate_series(1, 150000) g",
                    db="app")
        cluster.switch_and_archive()
    return parent, cluster.archive


@pytest.fixture()
def work(root: Path) -> Path:
    """A fresh, empty work root for one test (checked for leftovers by the tests)."""
    n = 0
    while (root / f"work{n}").exists():
        n += 1
    p = root / f"work{n}"
    p.mkdir()
    os.chmod(p, 0o755)
    return p


def postgres_processes_under(path: Path) -> List[str]:
    """Command lines of processes mentioning ``path`` that look like PostgreSQL."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = (Path("/proc") / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "postgres" in cmd and str(path) in cmd:
            found.append(cmd)
    return found
