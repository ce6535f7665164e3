"""restorecheck: prove PostgreSQL backups restore.

A :class:`Check` composes a source (where backups come from), a target (where one is restored,
cut off from production) and assertions (what must hold afterwards)::

    import restorecheck as rc

    def signups_look_sane(db: rc.Db) -> None:
        n = db.scalar("select count(*) from registrations where created_at > now() - interval '7 days'")
        assert n > 100, f"only {n} signups in the last week"

    check = rc.Check(
        name="app",
        source=rc.sources.BaseBackup("/backups/base", wal_archive="/backups/wal"),
        target=rc.targets.Local(),
        database="app",
        assertions=[
            rc.sql("select count(1) from registrations", min=1),
            rc.sql("select max(created_at) from registrations", max_age="24h"),
            signups_look_sane,
        ],
    )
    report = check.run()
    print(report.passed, report.to_json())

Sources, targets and TOML assertion kinds take the same options as ``restorecheck.toml``.
A failed check is a :class:`Report` value; exceptions (:class:`RestoreCheckError` and its
subclasses) mean the check could not be run (``rc.TimeoutError`` is left out of ``__all__`` so
that ``from restorecheck import *`` does not shadow the builtin). The GIL is released while a check runs; Ctrl-C
cancels it, waits for its teardown (server stopped, work dir removed) and raises
``KeyboardInterrupt``.
"""

import asyncio
import datetime
import os
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union

from . import _native, sources, targets
from ._native import (
    Assertion,
    ConfigError,
    Db,
    QueryError,
    RestoreCheckError,
    SourceError,
    TargetError,
    ToolingError,
    __version__,
)
from ._native import TimeoutError as TimeoutError  # exported, but not by ``import *``
from .report import AssertionResult, CheckResult, Report
from .sources import Source
from .targets import Target

__all__ = [
    "__version__",
    "Check",
    "Report",
    "CheckResult",
    "AssertionResult",
    "Assertion",
    "Db",
    "Source",
    "Target",
    "sources",
    "targets",
    "sql",
    "assertion",
    "run",
    "run_async",
    "run_config",
    "run_config_async",
    "kinds",
    "RestoreCheckError",
    "ConfigError",
    "SourceError",
    "TargetError",
    "ToolingError",
    "QueryError",
    "AssertionFunction",
    "Duration",
    "PathLike",
]

#: A callable assertion: gets the restored database; returns None/True to pass, False to fail,
#: or raises AssertionError (fail, message kept) or anything else (error, traceback kept).
AssertionFunction = Callable[[Db], Optional[bool]]
#: A duration: a human string as in TOML (``"90s"``, ``"30m"``, ``"1h 30m"``) or a timedelta.
Duration = Union[str, datetime.timedelta]
#: A file-system path.
PathLike = Union[str, "os.PathLike[str]"]


def sql(sql: str, **options: Any) -> Assertion:
    """An assertion of kind ``sql``: the first column of the first row of ``sql`` is compared.

    Options as in a ``[[check.assert]]`` table: ``min``, ``max``, ``equals``, ``max_age``
    (``"24h"`` or a timedelta: the value is a timestamp younger than this), ``name``, ``database``.
    A query hitting missing or damaged data fails; one that cannot run (syntax) errors.
    """
    return Assertion("sql", sql=sql, **options)


def assertion(kind: str, **options: Any) -> Assertion:
    """An assertion of any registered TOML kind, options as in its ``[[check.assert]]`` table."""
    return Assertion(kind, **options)


def kinds() -> Tuple[List[str], List[str], List[str]]:
    """The registered ``(source kinds, target kinds, assertion kinds)`` of the core."""
    return _native.kinds()


class Check:
    """One check: a source, a target and assertions, with the settings of a ``[[check]]`` table.

    ``assertions`` holds :func:`sql`/:func:`assertion` results and callables taking a :class:`Db`,
    run in order after the check-level ones (``max_backup_age``, integrity checks).
    ``max_backup_age`` (the restored backup must be younger) and ``timeout`` (deadline of the
    check, default 30 minutes; teardown always runs) are durations. ``backup`` picks a backup id
    instead of the newest. ``role`` is a database role the check's own assertions (SQL and
    callables) run as, via ``SET ROLE`` (default: the restored server's superuser; built-in
    integrity checks always run as superuser). ``rto`` is the recovery time objective: a check that
    restored but took longer fails with an ``rto`` assertion, exactly as in the CLI. Further keyword
    arguments are further keys of a ``[[check]]`` table (e.g. ``integrity={"amcheck": False}``,
    ``recovery_target="immediate"``): they fill the same settings struct (the core's ``CheckSpec``)
    that ``restorecheck.toml`` fills, so defaults, check-level assertions, verdicts and error
    messages are the CLI's. Invalid options raise :class:`ConfigError` here, at construction;
    nothing is restored until :meth:`run`.
    """

    def __init__(
        self,
        name: str,
        source: Source,
        target: Optional[Target] = None,
        *,
        database: Optional[str] = None,
        assertions: Iterable[Union[Assertion, AssertionFunction]] = (),
        max_backup_age: Optional[Duration] = None,
        timeout: Optional[Duration] = None,
        backup: Optional[str] = None,
        role: Optional[str] = None,
        rto: Optional[Duration] = None,
        **options: Any,
    ) -> None:
        """Builds and validates the check (nothing is restored yet)."""
        self._native = _native.Check(
            name,
            source,
            target,
            assertions=list(assertions),
            backup=backup,
            database=database,
            max_backup_age=max_backup_age,
            timeout=timeout,
            role=role,
            rto=rto,
            **options,
        )

    @property
    def name(self) -> str:
        """The check's name."""
        return self._native.name

    @property
    def database(self) -> str:
        """The database assertions run in by default."""
        return self._native.database

    @property
    def role(self) -> Optional[str]:
        """The database role the check's own assertions run as (None: the superuser)."""
        return self._native.role

    @property
    def timeout(self) -> datetime.timedelta:
        """The check's deadline."""
        return datetime.timedelta(seconds=self._native.timeout)

    @property
    def assertion_names(self) -> List[str]:
        """Names of the assertions in order (``max_backup_age`` first when set)."""
        return self._native.assertion_names

    def run(self, *, work_dir: Optional[PathLike] = None) -> Report:
        """Runs the check and returns its report (see :func:`run`)."""
        return run([self], work_dir=work_dir)

    async def run_async(self, *, work_dir: Optional[PathLike] = None) -> Report:
        """Runs the check without blocking the event loop (see :func:`run_async`)."""
        return await run_async([self], work_dir=work_dir)

    def __repr__(self) -> str:
        """``Check(name=…, database=…)``."""
        return f"Check(name={self.name!r}, database={self.database!r})"


def run(checks: Sequence[Check], *, work_dir: Optional[PathLike] = None) -> Report:
    """Runs ``checks`` in order and returns one report.

    The GIL is released while the checks run. Ctrl-C (or any exception a signal handler raises)
    cancels the run, waits until its teardown finished and raises the exception again.
    ``work_dir`` is the folder work directories go into (default ``$TMPDIR``, else ``/var/tmp``).
    """
    return Report(_native.run([c._native for c in checks], _path(work_dir)))


async def run_async(checks: Sequence[Check], *, work_dir: Optional[PathLike] = None) -> Report:
    """Like :func:`run`, for asyncio programs: awaits the run without blocking the event loop.

    The run goes on in the native runtime; a thread of the default executor waits for it
    (``asyncio.to_thread``) with the GIL released. Cancelling the awaiting task cancels the run,
    waits for its teardown and then raises ``CancelledError``.
    """
    handle = _native.start([c._native for c in checks], _path(work_dir))
    return await _await_handle(handle)


async def _await_handle(handle: _native.RunHandle) -> Report:
    waiter = asyncio.ensure_future(asyncio.to_thread(handle.wait))
    try:
        await asyncio.shield(waiter)
    except asyncio.CancelledError:
        handle.cancel()
        while not waiter.done():
            try:
                await asyncio.shield(waiter)
            except asyncio.CancelledError:
                continue
        raise
    return Report(handle.report())


def _load(path: PathLike, checks: Optional[Sequence[str]]) -> Tuple[Optional[str], List[_native.Check]]:
    work_dir, loaded = _native.load_config(path)
    if checks is not None:
        names = [c.name for c in loaded]
        for wanted in checks:
            if wanted not in names:
                raise ConfigError(f"no check named {wanted!r} in {os.fspath(path)}; checks: {', '.join(names)}")
        loaded = [c for c in loaded if c.name in checks]
    return (str(work_dir) if work_dir is not None else None), loaded


def run_config(
    path: PathLike, *, checks: Optional[Sequence[str]] = None, work_dir: Optional[PathLike] = None
) -> Report:
    """Runs the checks of a ``restorecheck.toml`` (all, or those named in ``checks``).

    Same parsing and validation as ``restorecheck run -c``; a bad file raises :class:`ConfigError`
    with the CLI's message (and line number). ``work_dir`` overrides the file's ``work_dir``.
    """
    file_work_dir, loaded = _load(path, checks)
    return Report(_native.run(loaded, _path(work_dir) or file_work_dir))


async def run_config_async(
    path: PathLike, *, checks: Optional[Sequence[str]] = None, work_dir: Optional[PathLike] = None
) -> Report:
    """:func:`run_config` for asyncio programs (see :func:`run_async`)."""
    file_work_dir, loaded = _load(path, checks)
    return await _await_handle(_native.start(loaded, _path(work_dir) or file_work_dir))


def _path(p: Optional[PathLike]) -> Optional[str]:
    return None if p is None else os.fspath(p)
