#!/usr/bin/env python3
"""The docker target with a host that has nothing but Docker and restorecheck.

For every source kind x PostgreSQL 13/15/17, good and damaged, this runs
`restorecheck run -c <one check>` with `[check.target] kind = "docker"` (image
restorecheck/tools:{major}) inside `without-host-tools.sh` (a mount namespace without the host's
PostgreSQL and backup tools), and compares the verdict with the expected one and, for the major
this host has (15), with the same check through `kind = "local"` run outside the namespace.

The backups are made by each major's own tools inside its image (make-fixtures.sh); the
damaged copies are made here, next to them (hard links for untouched files, so a damaged copy
never writes through to a good backup).

Usage (root; scripts/test-docker-isolated.sh builds what it needs first):
    harness.py --restorecheck PATH [--majors 13,15,17] [--only NAME,...] [--jobs N]
               [--fixtures DIR] [--keep]
Exit status: 0 when every cell has its expected verdict (and docker == local on 15), 1 when
one does not, 2 when the harness itself could not run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
IMAGE = "restorecheck/tools:{major}"
LOCAL_MAJOR = 15  # the only PostgreSQL installed on this host
WALG_SECRET = "walg-isolated-secret-4e2a91"
WAL_G_IN_IMAGE = "/usr/local/bin/wal-g"

GOOD_ROWS = 150  # 100 at backup time + 50 written later, only in the WAL archives
DUMP_ROWS = 100  # dumps and the self-contained -Xstream backup hold what was there at backup time


@dataclasses.dataclass
class Cell:
    """One check: a source kind and variant, its expected verdict and row count."""

    name: str
    expect: str  # "pass" | "fail"
    rows: int
    # The `[check.source]` body for fixture dir D and target ("docker" | "local").
    source: Callable[[Path, str], str]
    # Read-only mounts the docker target needs beyond what the source itself declares: what a
    # tool reads that the configuration does not name (storage named inside an envdir or an
    # env value, a repository named in pgbackrest.conf, what a `command` script reads), and
    # the WAL-G stand-in. (source, target) pairs.
    mounts: Callable[[Path], list[tuple[str, str]]] = lambda d: []
    damage: Optional[Callable[[Path], None]] = None
    # The docker target refuses this source (a configuration error, exit 2, before anything
    # runs) with a message containing this text; `local` must still give `expect`.
    docker_refused: Optional[str] = None


def q(s: object) -> str:
    """A TOML basic string."""
    return json.dumps(str(s))


# ---------------------------------------------------------------------------- damage helpers
def link_copy(src: Path, dst: Path) -> None:
    """A copy of a tree whose files are hard links (deleting one leaves the original alone)."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True, copy_function=os.link)


def own_copy(p: Path) -> None:
    """Replaces a hard link by a private copy, so it can be changed."""
    tmp = p.with_name(p.name + ".tmp-copy")
    shutil.copy2(p, tmp)
    st = p.stat()
    os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, p)


def truncate(p: Path, keep: float = 0.5) -> None:
    own_copy(p)
    size = p.stat().st_size
    with open(p, "r+b") as f:
        f.truncate(int(size * keep))


def truncate_lines(p: Path, keep: float = 0.7) -> None:
    own_copy(p)
    lines = p.read_bytes().splitlines(keepends=True)
    p.write_bytes(b"".join(lines[: int(len(lines) * keep)]))


def flip(p: Path, at: Optional[int] = None, n: int = 16) -> None:
    own_copy(p)
    data = bytearray(p.read_bytes())
    at = len(data) // 2 if at is None else at
    for i in range(at, min(at + n, len(data))):
        data[i] ^= 0xFF
    p.write_bytes(bytes(data))


def segment_files(folder: Path, suffix: str = "") -> list[Path]:
    """WAL segment files (24 hex digits + suffix), oldest first."""
    out = []
    for p in folder.iterdir():
        stem = p.name[: -len(suffix)] if suffix and p.name.endswith(suffix) else p.name
        if len(stem) == 24 and all(c in "0123456789ABCDEF" for c in stem) and (not suffix or p.name.endswith(suffix)):
            out.append(p)
    return sorted(out)


def drop_second_to_last(folder: Path, suffix: str = "") -> str:
    """Removes the second-to-last segment (one of the later writes): recovery cannot reach the end."""
    segs = segment_files(folder, suffix)
    assert len(segs) >= 3, f"too few segments in {folder}"
    segs[-2].unlink()
    return segs[-2].name


def dmg(d: Path, name: str) -> Path:
    return d / "damaged" / name


# ---------------------------------------------------------------------------- the cells
def bb_tar(archive: str) -> Callable[[Path, str], str]:
    return lambda d, t: f'kind = "basebackup"\npath = {q(d / "bb-tar")}\nwal_archive = {q(d / archive)}\n'


def compressed_archive(d: Path) -> None:
    """The WAL archive with its segments compressed as archive_commands do: gzip and zstd
    alternating (the restore_command must find both decompressors in the image)."""
    import gzip
    out = dmg(d, "archive-comp")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for i, seg in enumerate(sorted((d / "archive").iterdir())):
        if len(seg.name) != 24:
            shutil.copy2(seg, out / seg.name)
        elif i % 2:
            with open(seg, "rb") as src, gzip.open(out / (seg.name + ".gz"), "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst)
        else:
            subprocess.run(["zstd", "-q", "-1", str(seg), "-o", str(out / (seg.name + ".zst"))], check=True)


def damage_tar_nowal(d: Path) -> None:
    link_copy(d / "archive", dmg(d, "archive-nowal"))
    drop_second_to_last(dmg(d, "archive-nowal"))


def damage_tar_trunc(d: Path) -> None:
    link_copy(d / "bb-tar", dmg(d, "bb-tar-trunc"))
    truncate(dmg(d, "bb-tar-trunc") / "b1" / "base.tar")


def damage_plain_flip(d: Path) -> None:
    link_copy(d / "bb-plain", dmg(d, "bb-plain-flip"))
    rel = (d / "registrations.path").read_text().strip()
    flip(dmg(d, "bb-plain-flip") / "b1" / rel, at=200)


def damage_dump(folder: str, file: str, how: Callable[[Path], None]) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        link_copy(d / folder, dmg(d, folder + "-trunc"))
        how(dmg(d, folder + "-trunc") / file)

    return f


def pgbr_conf(d: Path, repo: Path) -> Path:
    """pgbackrest.conf for a (possibly damaged) copy of the repository."""
    if repo == d / "pgbr" / "repo":
        return d / "pgbr" / "pgbackrest.conf"
    conf = repo.parent / "pgbackrest.conf"
    text = (d / "pgbr" / "pgbackrest.conf").read_text().replace(f"repo1-path={d}/pgbr/repo", f"repo1-path={repo}")
    conf.write_text(text)
    conf.chmod(0o644)
    return conf


def pgbr_source(repo: str) -> Callable[[Path, str], str]:
    def f(d: Path, t: str) -> str:
        r = d / "pgbr" / "repo" if repo == "good" else dmg(d, f"pgbr-{repo}") / "repo"
        return f'kind = "pgbackrest"\nstanza = "rc"\nconfig = {q(pgbr_conf(d, r))}\n'

    return f


def damage_pgbr_nowal(d: Path) -> None:
    link_copy(d / "pgbr" / "repo", dmg(d, "pgbr-nowal") / "repo")
    arch = next((dmg(d, "pgbr-nowal") / "repo" / "archive" / "rc").glob("*-1/0000000100000000"))
    segs = sorted(p for p in arch.iterdir() if len(p.name.split("-")[0]) == 24 and "." not in p.name.split("-")[0])
    segs[-2].unlink()
    pgbr_conf(d, dmg(d, "pgbr-nowal") / "repo")


def damage_pgbr_flip(d: Path) -> None:
    link_copy(d / "pgbr" / "repo", dmg(d, "pgbr-flip") / "repo")
    rel = (d / "registrations.path").read_text().strip()
    files = list((dmg(d, "pgbr-flip") / "repo" / "backup" / "rc").glob(f"*F/pg_data/{rel}*"))
    assert files, "the registrations file is not in the pgBackRest backup"
    flip(files[0])
    pgbr_conf(d, dmg(d, "pgbr-flip") / "repo")


def barman_conf(d: Path, home: Path) -> Path:
    if home == d / "barman" / "home":
        return d / "barman" / "barman.conf"
    conf = home.parent / "barman.conf"
    conf.write_text(
        (d / "barman" / "barman.conf")
        .read_text()
        .replace(f"barman_home = {d}/barman/home", f"barman_home = {home}")
    )
    conf.chmod(0o644)
    return conf


def barman_source(variant: str) -> Callable[[Path, str], str]:
    def f(d: Path, t: str) -> str:
        home = d / "barman" / "home" if variant == "good" else dmg(d, f"barman-{variant}") / "home"
        return f'kind = "barman"\nserver = "rc"\nconfig = {q(barman_conf(d, home))}\n'

    return f


def damage_barman_nowal(d: Path) -> None:
    home = dmg(d, "barman-nowal") / "home"
    link_copy(d / "barman" / "home", home)
    # xlog.db is rewritten by Barman only in its shadow; the copy may share it.
    drop_second_to_last(home / "rc" / "wals" / "0000000100000000")
    barman_conf(d, home)


def walg_storage(d: Path, name: str, wal_from: Path) -> Path:
    """The WAL-G stand-in's storage (see tests/common/fake-wal-g.sh) over the -Fp -Xnone backup."""
    prefix = d / "walg" / name
    if prefix.exists():
        shutil.rmtree(prefix)
    base = prefix / "basebackups_005"
    base.mkdir(parents=True)
    link_copy(d / "bb-raw" / "b1", base / "base_b1")
    link_copy(wal_from, prefix / "wal_005")
    label = (d / "bb-raw" / "b1" / "backup_label").read_text()
    start_seg = label.split("(file ", 1)[1].split(")", 1)[0]
    manifest = json.loads((d / "bb-raw" / "b1" / "backup_manifest").read_text())

    def lsn(s: str) -> int:
        hi, lo = s.split("/")
        return (int(hi, 16) << 32) | int(lo, 16)

    ranges = manifest["WAL-Ranges"]
    start, finish = lsn(ranges[0]["Start-LSN"]), lsn(ranges[-1]["End-LSN"])
    version = int((d / "server_version_num").read_text().strip())
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    listing = [{
        "backup_name": "base_b1", "time": now, "wal_file_name": start_seg, "storage_name": "default",
        "start_time": now, "finish_time": now, "date_fmt": "%Y-%m-%dT%H:%M:%S.%fZ", "hostname": "stand-in",
        "data_dir": str(d / "cluster" / "pgdata"), "pg_version": version, "start_lsn": start, "finish_lsn": finish,
        "is_permanent": False, "system_identifier": 7312345678901234567, "uncompressed_size": 1000,
        "compressed_size": 400,
    }]
    (prefix / "list.json").write_text(json.dumps(listing))
    sentinel = {"LSN": start, "FinishLSN": finish, "PgVersion": version,
                "Spec": {"base_prefix": str(d / "cluster" / "pgdata"), "tablespaces": []}}
    (base / "base_b1_backup_stop_sentinel.json").write_text(json.dumps(sentinel))
    subprocess.run(["chmod", "-R", "a+rX", str(prefix)], check=True)
    return prefix


def walg_common(d: Path) -> None:
    stand_in = d / "walg" / "fake-wal-g"
    stand_in.parent.mkdir(exist_ok=True)
    shutil.copy(REPO / "restorecheck-core" / "tests" / "common" / "fake-wal-g.sh", stand_in)
    stand_in.chmod(0o755)
    env = d / "walg" / "walg.env"
    env.write_text(f"# credentials\nAWS_SECRET_ACCESS_KEY={WALG_SECRET}\n")
    env.chmod(0o600)


def walg_source(name: str) -> Callable[[Path, str], str]:
    def f(d: Path, t: str) -> str:
        binary = WAL_G_IN_IMAGE if t == "docker" else d / "walg" / "fake-wal-g"
        return (
            f'kind = "walg"\nbinary = {q(binary)}\nenv_file = {q(d / "walg" / "walg.env")}\n'
            f'env = {{ WALG_FILE_PREFIX = {q(d / "walg" / name)} }}\n'
        )

    return f


def walg_mounts(d: Path) -> list[tuple[str, str]]:
    return [(str(d / "walg" / "fake-wal-g"), WAL_G_IN_IMAGE), (str(d / "walg"), str(d / "walg"))]


def damage_walg_nowal(d: Path) -> None:
    link_copy(d / "archive", dmg(d, "archive-nowal-walg"))
    drop_second_to_last(dmg(d, "archive-nowal-walg"))
    walg_storage(d, "nowal", dmg(d, "archive-nowal-walg"))


def wale_source(variant: str) -> Callable[[Path, str], str]:
    def f(d: Path, t: str) -> str:
        envdir = d / "wale" / "env" if variant == "good" else dmg(d, f"wale-{variant}") / "env"
        # Docker: wal-e from the image's PATH (/usr/local/bin/wal-e); local: this host's venv.
        binary = "" if t == "docker" else 'binary = "/opt/restorecheck/wal-e/bin/wal-e"\n'
        return f'kind = "wale"\n{binary}envdir = {q(envdir)}\n'

    return f


def wale_copy(d: Path, variant: str) -> Path:
    root = dmg(d, f"wale-{variant}")
    link_copy(d / "wale" / "store", root / "store")
    (root / "env").mkdir(parents=True, exist_ok=True)
    (root / "env" / "WALE_FILE_PREFIX").write_text(f"file://localhost{root / 'store'}\n")
    (root / "env" / "WALE_LOG_DESTINATION").write_text("stderr\n")
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    return root / "store"


def damage_wale_nowal(d: Path) -> None:
    store = wale_copy(d, "nowal")
    drop_second_to_last(store / "wal_005", ".lzo")


def damage_wale_trunc(d: Path) -> None:
    store = wale_copy(d, "trunc")
    parts = sorted(store.glob("basebackups_005/base_*/tar_partitions/part_*.tar.lzo"))
    assert parts, "no WAL-E tar partition"
    truncate(parts[0])


def command_source(archive: str) -> Callable[[Path, str], str]:
    def f(d: Path, t: str) -> str:
        listing = json.dumps({"id": "b1", "taken_at": "2026-01-01T00:00:00Z", "kind": "plain"})
        list_cmd = "echo '" + listing + "'"
        fetch = f'cp -a {d / "bb-raw" / "b1"}/. "$RESTORECHECK_DEST"'
        restore = 'cp "$WAL_DIR/%f" "%p"'
        return (
            'kind = "command"\n'
            f"list = {q(list_cmd)}\nfetch = {q(fetch)}\nrestore_command = {q(restore)}\n"
            f"env = {{ WAL_DIR = {q(d / archive)} }}\n"
        )

    return f


def damage_command_nowal(d: Path) -> None:
    link_copy(d / "archive", dmg(d, "archive-nowal-cmd"))
    drop_second_to_last(dmg(d, "archive-nowal-cmd"))


def whole(d: Path) -> list[tuple[str, str]]:
    return [(str(d), str(d))]


CELLS: list[Cell] = [
    Cell("basebackup-tar-good", "pass", GOOD_ROWS, bb_tar("archive")),
    Cell("basebackup-tar-compressed-wal", "pass", GOOD_ROWS, bb_tar("damaged/archive-comp"), damage=compressed_archive),
    Cell("basebackup-tar-missing-wal", "fail", GOOD_ROWS, bb_tar("damaged/archive-nowal"), damage=damage_tar_nowal),
    Cell("basebackup-tar-truncated", "fail", GOOD_ROWS,
         lambda d, t: f'kind = "basebackup"\npath = {q(dmg(d, "bb-tar-trunc"))}\nwal_archive = {q(d / "archive")}\n',
         damage=damage_tar_trunc),
    Cell("basebackup-plain-good", "pass", DUMP_ROWS, lambda d, t: f'kind = "basebackup"\npath = {q(d / "bb-plain")}\n'),
    Cell("basebackup-plain-flipped-bits", "fail", DUMP_ROWS,
         lambda d, t: f'kind = "basebackup"\npath = {q(dmg(d, "bb-plain-flip"))}\n', damage=damage_plain_flip),
    Cell("pg_dump-custom-good", "pass", DUMP_ROWS, lambda d, t: f'kind = "pg_dump"\npath = {q(d / "dump-custom")}\n'),
    Cell("pg_dump-custom-truncated", "fail", DUMP_ROWS,
         lambda d, t: f'kind = "pg_dump"\npath = {q(dmg(d, "dump-custom-trunc"))}\n',
         damage=damage_dump("dump-custom", "app.dump", lambda p: truncate(p, 0.6))),
    Cell("pg_dump-plain-good", "pass", DUMP_ROWS, lambda d, t: f'kind = "pg_dump"\npath = {q(d / "dump-plain")}\n'),
    Cell("pg_dump-plain-truncated", "fail", DUMP_ROWS,
         lambda d, t: f'kind = "pg_dump"\npath = {q(dmg(d, "dump-plain-trunc"))}\n',
         damage=damage_dump("dump-plain", "app.sql", truncate_lines)),
    Cell("pg_dumpall-good", "pass", DUMP_ROWS, lambda d, t: f'kind = "pg_dump"\npath = {q(d / "dumpall")}\n'),
    Cell("pg_dumpall-truncated", "fail", DUMP_ROWS,
         lambda d, t: f'kind = "pg_dump"\npath = {q(dmg(d, "dumpall-trunc"))}\n',
         damage=damage_dump("dumpall", "cluster.sql", truncate_lines)),
    Cell("pgbackrest-good", "pass", GOOD_ROWS, pgbr_source("good"), mounts=whole),
    Cell("pgbackrest-missing-wal", "fail", GOOD_ROWS, pgbr_source("nowal"), mounts=whole, damage=damage_pgbr_nowal),
    Cell("pgbackrest-flipped-bits", "fail", GOOD_ROWS, pgbr_source("flip"), mounts=whole, damage=damage_pgbr_flip),
    # Barman writes into its catalog even to list backups (locks; 2.12 and 3.4 rewrite
    # wals/<server>-xlog.db): in docker it sees the catalog through a private overlay.
    Cell("barman-good", "pass", GOOD_ROWS, barman_source("good")),
    Cell("barman-missing-wal", "fail", GOOD_ROWS, barman_source("nowal"), damage=damage_barman_nowal),
    Cell("walg-good", "pass", GOOD_ROWS, walg_source("good"), mounts=walg_mounts,
         damage=lambda d: walg_storage(d, "good", d / "archive")),
    Cell("walg-missing-wal", "fail", GOOD_ROWS, walg_source("nowal"), mounts=walg_mounts, damage=damage_walg_nowal),
    Cell("wale-good", "pass", GOOD_ROWS, wale_source("good"), mounts=whole),
    Cell("wale-missing-wal", "fail", GOOD_ROWS, wale_source("nowal"), mounts=whole, damage=damage_wale_nowal),
    Cell("wale-truncated", "fail", GOOD_ROWS, wale_source("trunc"), mounts=whole, damage=damage_wale_trunc),
    Cell("command-good", "pass", GOOD_ROWS, command_source("archive"), mounts=whole),
    Cell("command-missing-wal", "fail", GOOD_ROWS, command_source("damaged/archive-nowal-cmd"), mounts=whole,
         damage=damage_command_nowal),
]


def config(cell: Cell, d: Path, target: str) -> str:
    if target == "docker":
        mounts = cell.mounts(d)
        tgt = f'kind = "docker"\nimage = {q(IMAGE)}\n'
        if mounts:
            tgt += "mounts = [" + ", ".join(f"{{ source = {q(s)}, target = {q(t)} }}" for s, t in mounts) + "]\n"
    else:
        tgt = 'kind = "local"\n'
    return (
        f'[[check]]\nname = {q(cell.name)}\ndatabase = "app"\ntimeout = "5m"\n\n'
        f"[check.source]\n{cell.source(d, target)}\n"
        f"[check.target]\n{tgt}\n"
        f'[[check.assert]]\nname = "registrations"\nsql = "select count(1) from registrations"\nequals = {cell.rows}\n'
    )


# ---------------------------------------------------------------------------- running
@dataclasses.dataclass
class Result:
    verdict: str  # pass | fail | error
    phase: str
    message: str
    seconds: float


def run_one(rc: Path, cfg: Path, work: Path, isolated: bool) -> Result:
    out = cfg.with_suffix(".json")
    if out.exists():
        out.unlink()
    work.mkdir(parents=True, exist_ok=True)
    cmd = [str(rc), "-q", "run", "-c", str(cfg), "--format", "json", "-o", str(out), "--no-history",
           "--work-dir", str(work)]
    if isolated:
        cmd = ["sh", str(HERE / "without-host-tools.sh")] + cmd
    env = dict(os.environ, ISOLATED_QUIET="1")
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    except subprocess.TimeoutExpired:
        return Result("error", "-", "restorecheck did not finish within 600 s", time.monotonic() - t0)
    dt = time.monotonic() - t0
    cfg.with_suffix(".stderr").write_text(p.stderr)
    if p.returncode == 125:
        return Result("error", "-", "isolation broken: " + p.stderr.strip()[-300:], dt)
    try:
        report = json.loads(out.read_text())
        c = report["checks"][0]
        f = c.get("failure") or {}
        return Result(c["verdict"], f.get("phase", "-"), (f.get("message") or "").replace("\n", " "), dt)
    except (OSError, ValueError, KeyError, IndexError):
        v = {0: "pass", 1: "fail"}.get(p.returncode, "error")
        lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
        return Result(v, "-", " | ".join(lines[-3:])[:400] or f"exit {p.returncode}", dt)


def check_archives(d: Path) -> None:
    """The four archives got the same, gap-free run of segments (or the fixtures are wrong)."""
    plain = [p.name for p in segment_files(d / "archive")]
    wale = [p.name[:-4] for p in segment_files(d / "wale" / "store" / "wal_005", ".lzo")]
    pgbr = sorted(p.name.split("-")[0] for p in (d / "pgbr" / "repo" / "archive" / "rc").glob("*-1/0000000100000000/*")
                  if len(p.name.split("-")[0]) == 24)
    numbers = [int(n[8:16], 16) * 256 + int(n[16:], 16) for n in plain]
    problems = []
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        problems.append(f"plain archive has gaps: {plain}")
    if wale != plain:
        problems.append(f"WAL-E has {wale}, the plain archive {plain}")
    if pgbr != plain:
        problems.append(f"pgBackRest has {pgbr}, the plain archive {plain}")
    if problems:
        raise SystemExit("harness: fixtures in " + str(d) + " are inconsistent: " + "; ".join(problems))


def tree_state(d: Path) -> dict[str, tuple[int, int, int, int, int]]:
    """Every entry under `d` (not following links): mode, owner, size and mtime; a write into a
    backup, a new file or a removed one changes it."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(d):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            out[str(p.relative_to(d))] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns)
    return out


def changed(before: dict, after: dict) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def make_fixtures(root: Path, major: int) -> Path:
    d = root / f"pg{major}"
    if (d / "damaged.done").exists():
        return d
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    t0 = time.monotonic()
    p = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "-v", f"{d}:{d}",
         "-v", f"{HERE / 'make-fixtures.sh'}:/restorecheck-make-fixtures.sh:ro",
         IMAGE.replace("{major}", str(major)), "sh", "/restorecheck-make-fixtures.sh", str(d), str(major)],
        capture_output=True, text=True, timeout=600)
    if p.returncode != 0 or not (d / "fixtures.done").exists():
        sys.stderr.write(p.stderr)
        raise SystemExit(f"harness: making the PostgreSQL {major} fixtures failed (exit {p.returncode})")
    check_archives(d)
    walg_common(d)
    for cell in CELLS:
        if cell.damage:
            cell.damage(d)
    subprocess.run(["chmod", "-R", "a+rX", str(d / "damaged")], check=True)
    (d / "damaged.done").touch()
    print(f"fixtures {major}: made in {time.monotonic() - t0:.0f} s ({d})", flush=True)
    return d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--restorecheck", required=True, type=Path)
    ap.add_argument("--majors", default="13,15,17")
    ap.add_argument("--only", default="", help="comma-separated cell names (default: all)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--fixtures", type=Path, help="reuse/keep fixtures in DIR")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("harness: must run as root (unshare -m, backups owned by the images' users)", file=sys.stderr)
        return 2
    majors = [int(m) for m in a.majors.split(",") if m]
    cells = [c for c in CELLS if not a.only or c.name in a.only.split(",")]
    if not cells:
        print(f"harness: no cell named {a.only!r}", file=sys.stderr)
        return 2
    t_all = time.monotonic()
    root = a.fixtures or Path(tempfile.mkdtemp(prefix="restorecheck-isolated.", dir="/var/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    try:
        # The majors' fixtures in parallel: mostly waiting on archiving and container starts.
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(majors)) as pool:
            dirs = dict(zip(majors, pool.map(lambda m: make_fixtures(root, m), majors)))
        t_fix = time.monotonic() - t_all
        jobs = []
        for m in majors:
            for c in cells:
                for target in ["docker", "local"] if m == LOCAL_MAJOR else ["docker"]:
                    cfgdir = root / "configs" / f"pg{m}"
                    cfgdir.mkdir(parents=True, exist_ok=True)
                    cfg = cfgdir / f"{c.name}.{target}.toml"
                    cfg.write_text(config(c, dirs[m], target))
                    jobs.append((m, c, target, cfg))
        # The backups, repositories and catalogs are only ever read (Barman's catalog included,
        # which the docker target overlays privately): compared after every check ran.
        before = {m: tree_state(dirs[m]) for m in majors}
        results: dict[tuple[int, str, str], Result] = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
            # Short work dirs: a long one moves the server socket to /tmp/rc-<run>-<i>, which the
            # docker target does not create before binding it (bug found by this harness).
            futs = {
                pool.submit(run_one, a.restorecheck, cfg, root / "w" / str(i), target == "docker"): (m, c.name, target)
                for i, (m, c, target, cfg) in enumerate(jobs)
            }
            for fut in concurrent.futures.as_completed(futs):
                results[futs[fut]] = fut.result()
        touched = {m: changed(before[m], tree_state(dirs[m])) for m in majors}
        rc = report(majors, cells, results, root, t_fix, time.monotonic() - t_all)
        for m, paths in touched.items():
            if paths:
                print(f"FAILED: the PostgreSQL {m} fixtures changed during the checks: {', '.join(paths[:10])}")
                rc = 1
        if not any(touched.values()):
            print(f"fixtures untouched: {sum(len(b) for b in before.values())} entries compared")
        return rc
    finally:
        if not a.keep and not a.fixtures:
            shutil.rmtree(root, ignore_errors=True)


def report(majors: list[int], cells: list[Cell], results: dict, root: Path, t_fix: float, t_all: float) -> int:
    ok = bad = 0
    rows = []
    print(f"\n{'cell':<34} {'PG':>2}  {'expect':<6} {'local':<14} {'docker (isolated)':<20} {'s':>5}  result")
    for m in majors:
        for c in cells:
            d = results[(m, c.name, "docker")]
            loc = results.get((m, c.name, "local"))
            if c.docker_refused:
                good = d.verdict == "error" and c.docker_refused in d.message and (loc is None or loc.verdict == c.expect)
                why = "" if good else f"docker must refuse ({c.docker_refused!r}): {d.message}; local: {loc.verdict if loc else '-'}"
            else:
                good = d.verdict == c.expect and (loc is None or loc.verdict == d.verdict)
                why = ""
                if not good:
                    why = d.message if d.verdict != c.expect else f"local says {loc.verdict}: {loc.message}" if loc else ""
            ok += good
            bad += not good
            ls = f"{loc.verdict}/{loc.phase}" if loc else "-"
            shown = f"refused ({c.expect} on local)" if c.docker_refused else c.expect
            print(f"{c.name:<34} {m:>2}  {shown:<6} {ls:<14} {d.verdict + '/' + d.phase:<20} {d.seconds:5.1f}  "
                  f"{'OK' if good else 'MISMATCH'}{(': ' + why[:220]) if why else ''}", flush=True)
            rows.append({"cell": c.name, "major": m, "expect": c.expect, "docker": dataclasses.asdict(d),
                         "local": dataclasses.asdict(loc) if loc else None, "ok": good})
    (root / "results.json").write_text(json.dumps(rows, indent=1))
    docker_secs = sorted(r["docker"]["seconds"] for r in rows)
    med = docker_secs[len(docker_secs) // 2] if docker_secs else 0.0
    print(f"\n{ok} of {ok + bad} cells as expected; fixtures {t_fix:.0f} s, whole run {t_all:.0f} s, "
          f"median docker check {med:.1f} s (results: {root / 'results.json'})")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
