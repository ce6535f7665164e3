"""Type stubs of the native module ``restorecheck._native`` (Rust, pyo3)."""

import datetime
import os
import pathlib
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

__version__: str

class RestoreCheckError(Exception):
    """Base class: the check could not be run. A check that ran and failed is a Report."""

class ConfigError(RestoreCheckError):
    """Invalid configuration; the message is the one the CLI prints."""

class SourceError(RestoreCheckError):
    """A backup source could not list or read backups."""

class TargetError(RestoreCheckError):
    """A restore target could not start or stop PostgreSQL."""

class TimeoutError(RestoreCheckError):
    """A deadline passed."""

class ToolingError(RestoreCheckError):
    """The tester's own tooling is missing or unusable."""

class QueryError(RestoreCheckError):
    """A query on the restored database failed."""

    sqlstate: Optional[str]

def kinds() -> Tuple[List[str], List[str], List[str]]:
    """Registered source, target and assertion kind names."""

class Source:
    """Where backups come from: ``Source(kind, **options)``."""

    def __new__(cls, kind: str, /, **options: Any) -> "Source": ...
    @property
    def kind(self) -> str:
        """The kind name."""
    @property
    def options(self) -> Dict[str, Any]:
        """The options given."""
    def backups(self) -> List[Dict[str, Any]]:
        """The backups this source sees, newest first."""

class Target:
    """Where a backup is restored: ``Target(kind, **options)``."""

    def __new__(cls, kind: str, /, **options: Any) -> "Target": ...
    @property
    def kind(self) -> str:
        """The kind name."""
    @property
    def options(self) -> Dict[str, Any]:
        """The options given."""

class Assertion:
    """A TOML assertion kind: ``Assertion(kind, **options)``."""

    def __new__(cls, kind: str, /, **options: Any) -> "Assertion": ...
    @property
    def kind(self) -> str:
        """The kind name."""
    @property
    def options(self) -> Dict[str, Any]:
        """The options given."""
    @property
    def name(self) -> str:
        """The name shown in reports."""

class Db:
    """The restored database, as a callable assertion sees it."""

    def query(self, sql: str, *params: Any) -> List[Tuple[Any, ...]]:
        """Runs ``sql`` with ``$1``… bound to ``params``; returns the rows."""
    def scalar(self, sql: str, *params: Any) -> Any:
        """The first column of the first row (None without rows)."""
    @property
    def database(self) -> str:
        """The database queries run in."""
    @property
    def backup_id(self) -> str:
        """Id of the restored backup."""
    @property
    def backup_taken_at(self) -> Optional[datetime.datetime]:
        """When the backup was taken."""
    @property
    def recovery_end_lsn(self) -> Optional[str]:
        """Last WAL position replayed."""
    @property
    def recovery_end_time(self) -> Optional[datetime.datetime]:
        """Commit time of the last replayed transaction."""
    @property
    def pg_version(self) -> Optional[str]:
        """server_version of the restored server."""
    @property
    def timeline(self) -> Optional[int]:
        """Timeline after recovery."""
    @property
    def dsn(self) -> str:
        """libpq connection string of the restored server."""

class Check:
    """One check (native)."""

    def __new__(
        cls,
        name: str,
        source: Source,
        target: Optional[Target] = None,
        *,
        assertions: Optional[Sequence[Any]] = None,
        backup: Optional[str] = None,
        **options: Any,
    ) -> "Check": ...
    @property
    def name(self) -> str:
        """The check's name."""
    @property
    def database(self) -> str:
        """Default database of its assertions."""
    @property
    def timeout(self) -> float:
        """Deadline in seconds."""
    @property
    def backup(self) -> Optional[str]:
        """Backup id to test instead of the newest."""
    @property
    def role(self) -> Optional[str]:
        """Database role the check's own assertions run as (None: the superuser)."""
    @property
    def assertion_names(self) -> List[str]:
        """Names of the assertions, in order."""

class NativeReport:
    """A finished run's report."""

    def to_json(self) -> str:
        """The JSON contract (version 1)."""
    def to_text(self) -> str:
        """The text report."""
    @property
    def exit_code(self) -> int:
        """0 passed, 1 failed, 2 error."""

class RunHandle:
    """A run going on in the background."""

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits until finished or ``timeout`` seconds passed; True when finished."""
    def cancel(self) -> None:
        """Cancels the run; teardown still runs."""
    def done(self) -> bool:
        """True once the run finished."""
    def report(self) -> NativeReport:
        """The report of a finished run."""

def start(checks: List[Check], work_dir: Union[str, "os.PathLike[str]", None] = None) -> RunHandle:
    """Starts a run in the background."""

def run(checks: List[Check], work_dir: Union[str, "os.PathLike[str]", None] = None) -> NativeReport:
    """Runs checks; Ctrl-C cancels (teardown runs) and re-raises KeyboardInterrupt."""

def load_config(path: Union[str, "os.PathLike[str]"]) -> Tuple[Optional[pathlib.Path], List[Check]]:
    """Loads a restorecheck.toml: its work_dir and checks."""
