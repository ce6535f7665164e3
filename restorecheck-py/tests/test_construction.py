"""Building sources, targets, assertions and checks: table-driven through the core's registry,
errors as exceptions with the CLI's messages. Nothing is restored here."""

import datetime
import os
import subprocess
from pathlib import Path

import pytest

import restorecheck as rc


def test_exception_hierarchy() -> None:
    assert rc.TimeoutError.__module__ == "restorecheck" and "TimeoutError" not in rc.__all__
    for cls in (rc.ConfigError, rc.SourceError, rc.TargetError, rc.TimeoutError, rc.ToolingError, rc.QueryError):
        assert issubclass(cls, rc.RestoreCheckError), cls
    assert issubclass(rc.RestoreCheckError, Exception)
    assert rc.ConfigError.__module__ == "restorecheck"
    assert rc.ConfigError.__doc__


def test_every_core_kind_is_reachable_by_name() -> None:
    sources, targets, assertions = rc.kinds()
    assert "basebackup" in sources and {"local", "docker"} <= set(targets) and "sql" in assertions
    for kind in sources:
        with pytest.raises(rc.ConfigError) as e:
            rc.sources.Source(kind, no_such_option=1)
        assert "no_such_option" in str(e.value), (kind, str(e.value))
    for kind in targets:
        with pytest.raises(rc.ConfigError) as e:
            rc.targets.Target(kind, no_such_option=1)
        assert "no_such_option" in str(e.value)
    # Named classes map to existing kinds where the core has them.
    for cls_name, kind in {**rc.sources.KINDS, **rc.targets.KINDS}.items():
        assert kind in sources + targets or kind in {"pgbackrest", "barman", "walg", "wale", "command"}, cls_name


def test_named_classes_are_the_generic_ones() -> None:
    s = rc.sources.BaseBackup("/backups/base", wal_archive=Path("/backups/wal"), backup=None)
    assert isinstance(s, rc.sources.Source) and isinstance(s, rc.Source)
    assert s.kind == "basebackup"
    assert s.options == {"path": "/backups/base", "wal_archive": "/backups/wal"}
    assert repr(s) == "BaseBackup(kind='basebackup', path='/backups/base', wal_archive='/backups/wal')"
    g = rc.sources.Source("basebackup", path="/backups/base")
    assert g.options == {"path": "/backups/base"}
    t = rc.sources.BaseBackup(
        "/b", recovery_target={"time": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)}
    )
    assert t.options["recovery_target"] == {"time": "2026-01-02T03:04:05+00:00"}
    d = rc.targets.Docker(image="postgres:{major}", settings={"work_mem": "64MB"})
    assert d.kind == "docker" and d.options["settings"] == {"work_mem": "64MB"}
    assert rc.targets.Local().kind == "local"
    a = rc.sql("select 1", min=1, max_age=datetime.timedelta(hours=24, milliseconds=5))
    assert a.kind == "sql" and a.options["max_age"] == "86400s 5000us" and a.name == "select 1"


CLI_TOML = """[[check]]
name = "x"

[check.source]
kind = "basebackup"
path = "/b"
wal_archiv = "/w"
"""


def test_unknown_option_raises_config_error_with_the_cli_message(tmp_path: Path) -> None:
    with pytest.raises(rc.ConfigError) as e:
        rc.sources.BaseBackup("/b", wal_archiv="/w")
    msg = str(e.value)
    assert msg.startswith("configuration error: source basebackup: unknown field `wal_archiv`, expected one of"), msg
    # The CLI prints the same message (plus the line number it knows from the file).
    cfg = tmp_path / "bad.toml"
    cfg.write_text(CLI_TOML)
    with pytest.raises(rc.ConfigError) as from_file:
        rc.run_config(cfg)
    assert str(from_file.value) == msg.replace("configuration error:", "configuration error at line 7:")
    cli = os.environ.get("RESTORECHECK_CLI")
    if cli:
        out = subprocess.run([cli, "validate", "-c", str(cfg)], capture_output=True, text=True)
        assert out.returncode == 2
        assert out.stderr.splitlines()[0] == "error: " + str(from_file.value)


def test_other_config_errors() -> None:
    with pytest.raises(rc.ConfigError, match='unknown source kind "tape"; known: .*basebackup'):
        rc.sources.Source("tape", path="/x")
    with pytest.raises(rc.ConfigError, match="unknown assertion kind"):
        rc.assertion("nope")
    with pytest.raises(rc.ConfigError, match="invalid type: string"):
        rc.sql("select 1", min="lots")
    with pytest.raises(rc.ConfigError, match="archive_command cannot be changed"):
        rc.targets.Local(settings={"archive_command": "cp %p /prod"})
    with pytest.raises(rc.ConfigError, match="cannot use a value of type object"):
        rc.sources.BaseBackup("/b", backup=object())
    src = rc.sources.BaseBackup("/b")
    with pytest.raises(rc.ConfigError, match='invalid duration "thirty minutes"'):
        rc.Check("x", src, timeout="thirty minutes")
    with pytest.raises(rc.ConfigError, match="invalid type: integer `5`, expected a string"):
        rc.Check("x", src, max_backup_age=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable taking the db"):
        rc.Check("x", src, assertions=["select 1"])  # type: ignore[list-item]


def test_check_fields() -> None:
    def mine(db: rc.Db) -> None:
        pass

    c = rc.Check(
        "app",
        rc.sources.BaseBackup("/b"),
        database="app",
        max_backup_age="26h",
        timeout="1h 30m",
        assertions=[rc.sql("select 1", name="one"), mine],
    )
    assert c.name == "app" and c.database == "app"
    assert c.timeout == datetime.timedelta(minutes=90)
    assert c.assertion_names[0] == "max_backup_age" and c.assertion_names[-2:] == ["one", "mine"]
    d = rc.Check("default", rc.sources.BaseBackup("/b"))
    assert d.database == "postgres" and d.timeout == datetime.timedelta(minutes=30)
    # Check-level options are the [[check]] table's, defaults included: the same as from a file.
    assert "amcheck" in d.assertion_names
    plain = rc.Check("plain", rc.sources.BaseBackup("/b"), integrity={"amcheck": False})
    assert plain.assertion_names == []
    with pytest.raises(rc.ConfigError, match="unknown field `colour`"):
        rc.Check("x", rc.sources.BaseBackup("/b"), colour="blue")
    with pytest.raises(rc.ConfigError, match="unknown field `amcheque`"):
        rc.Check("x", rc.sources.BaseBackup("/b"), integrity={"amcheque": False})


def test_checks_match_the_same_checks_from_a_file(tmp_path: Path) -> None:
    cfg = tmp_path / "same.toml"
    cfg.write_text(
        '[[check]]\nname = "a"\nmax_backup_age = "26h"\n[check.source]\nkind = "basebackup"\npath = "/b"\n'
        '[[check]]\nname = "b"\ntimeout = "5m"\nintegrity = { read_all = true, amcheck = false }\n'
        '[check.source]\nkind = "basebackup"\npath = "/b"\n'
    )
    _, from_file = rc._native.load_config(cfg)
    a = rc.Check("a", rc.sources.BaseBackup("/b"), max_backup_age="26h")
    b = rc.Check("b", rc.sources.BaseBackup("/b"), timeout="5m", integrity={"read_all": True, "amcheck": False})
    assert a.assertion_names == from_file[0].assertion_names
    assert b.assertion_names == from_file[1].assertion_names
    assert b.timeout.total_seconds() == from_file[1].timeout == 300


def test_unusable_source_is_a_report_not_an_exception(work: Path) -> None:
    report = rc.Check("gone", rc.sources.BaseBackup(work / "nothing-here")).run(work_dir=work)
    assert report.verdict == "error" and report.exit_code == 2
    failure = report.checks[0].failure
    assert failure is not None and failure["phase"] == "select"
    assert "nothing-here" in failure["message"]
    with pytest.raises(rc.SourceError, match="nothing-here"):
        rc.sources.BaseBackup(work / "nothing-here").backups()


def test_run_config_errors(tmp_path: Path) -> None:
    with pytest.raises(rc.ConfigError, match="cannot read config"):
        rc.run_config(tmp_path / "missing.toml")
    cfg = tmp_path / "ok.toml"
    cfg.write_text(CLI_TOML.replace("wal_archiv", "wal_archive"))
    with pytest.raises(rc.ConfigError, match="no check named 'other'"):
        rc.run_config(cfg, checks=["other"])


def test_the_underlying_error_is_the_cause_and_named_once(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(rc.ConfigError) as e:
        rc.run_config(missing)
    msg = str(e.value)
    assert msg.startswith(f"configuration error: cannot read config {missing}: No such file or directory"), msg
    assert msg.count("No such file or directory") == 1, msg
    cause = e.value.__cause__
    assert isinstance(cause, FileNotFoundError), repr(cause)
    assert "No such file or directory" in str(cause), str(cause)
    assert cause.__cause__ is None
    with pytest.raises(rc.ConfigError) as folder:
        rc.run_config(tmp_path)
    assert isinstance(folder.value.__cause__, IsADirectoryError), repr(folder.value.__cause__)
    cli = os.environ.get("RESTORECHECK_CLI")
    if cli:
        out = subprocess.run([cli, "validate", "-c", str(missing)], capture_output=True, text=True)
        assert out.returncode == 2
        lines = out.stderr.splitlines()
        assert lines[0] == f"error: configuration error: cannot read config {missing}", out.stderr
        assert lines[1] == "  Caused by: " + str(cause), out.stderr
        assert msg == lines[0].removeprefix("error: ") + ": " + str(cause)


def test_public_names_have_docstrings() -> None:
    missing = []
    for module in (rc, rc.sources, rc.targets, rc.report):
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if getattr(obj, "__module__", None) == "typing":
                continue  # type aliases (documented by comments)
            if callable(obj) and not (obj.__doc__ or "").strip():
                missing.append(f"{module.__name__}.{name}")
            if isinstance(obj, type):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or not callable(member) and not isinstance(member, property):
                        continue
                    if not (getattr(member, "__doc__", None) or "").strip():
                        missing.append(f"{module.__name__}.{name}.{attr}")
    for cls in (rc.Db, rc._native.RunHandle, rc._native.NativeReport, rc._native.Check):
        for attr, member in vars(cls).items():
            if not attr.startswith("_") and not (getattr(member, "__doc__", None) or "").strip():
                missing.append(f"{cls.__name__}.{attr}")
    assert missing == []


def test_object_storage_and_decryption_options(tmp_path: Path) -> None:
    # Nested tables pass through as in TOML; locations and keys are checked when built.
    with pytest.raises(rc.ConfigError, match="cannot read identity_file"):
        rc.sources.BaseBackup("s3://bucket/base", decrypt={"kind": "age", "identity_file": str(tmp_path / "none")})
    with pytest.raises(rc.ConfigError, match="unsupported location"):
        rc.sources.PgDump("ftp://host/dumps")
    key = tmp_path / "backup.agekey"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    src = rc.sources.BaseBackup(
        "s3://bucket/base",
        wal_archive="s3://bucket/wal",
        storage={"endpoint": "http://127.0.0.1:9", "region": "us-east-1", "retries": 2},
        decrypt={"kind": "age", "identity_file": str(key)},
    )
    assert src.options["storage"]["retries"] == 2
    assert "AGE-SECRET-KEY" not in repr(src)
    rc.Check("s3", src)
