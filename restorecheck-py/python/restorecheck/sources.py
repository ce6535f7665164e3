"""Backup sources: where the backups to test come from.

Every source kind of the core is reachable through :class:`Source` with the same option names as a
``[check.source]`` table in ``restorecheck.toml``; unknown options raise :class:`~restorecheck.ConfigError`
with the message the CLI prints. The named classes below are thin shorthands for ``Source(kind, …)``::

    rc.sources.BaseBackup("/backups/base", wal_archive="/backups/wal")
    rc.sources.Source("basebackup", path="/backups/base")        # the same
"""

from typing import Any, ClassVar, Dict, Type, TypeVar, cast

from ._native import Source

_T = TypeVar("_T", bound="_Named")

__all__ = ["Source", "BaseBackup", "PgDump", "PgBackRest", "Barman", "WalG", "WalE", "Command", "KINDS"]


class _Named(Source):
    """A source whose kind is fixed by the class (see :data:`KINDS`)."""

    kind_name: ClassVar[str] = ""

    def __new__(cls: Type[_T], **options: Any) -> _T:
        """Builds the source of kind ``cls.kind_name`` from ``options``."""
        return cast(_T, Source.__new__(cls, cls.kind_name, **options))


class BaseBackup(_Named):
    """``pg_basebackup`` output (plain or tar, compressed or not), optionally with a WAL archive.

    Options: ``path`` (one backup or a folder of backups), ``backup``, ``wal_archive``, and any
    further option of the core's ``basebackup`` kind.
    """

    kind_name = "basebackup"

    def __new__(cls, path: Any, **options: Any) -> "BaseBackup":
        """Builds a ``basebackup`` source over ``path``."""
        return super().__new__(cls, path=path, **options)


class PgDump(_Named):
    """A ``pg_dump`` archive (custom, directory, tar or plain) or ``pg_dumpall`` output loaded into a fresh cluster.

    Options as the core's ``pg_dump`` kind: ``path``, ``backup``, ``database``, ``globals``, ``no_owner``, ``jobs``,
    ``restore_tablespaces``.
    """

    kind_name = "pg_dump"

    def __new__(cls, path: Any, **options: Any) -> "PgDump":
        """Builds a ``pg_dump`` source over ``path``."""
        return super().__new__(cls, path=path, **options)


class PgBackRest(_Named):
    """A pgBackRest repository (kind ``pgbackrest``); options as in ``[check.source]``."""

    kind_name = "pgbackrest"


class Barman(_Named):
    """A Barman server (kind ``barman``); options as in ``[check.source]``."""

    kind_name = "barman"


class WalG(_Named):
    """WAL-G backups (kind ``walg``); options as in ``[check.source]``."""

    kind_name = "walg"


class WalE(_Named):
    """WAL-E backups (kind ``wale``); options as in ``[check.source]``."""

    kind_name = "wale"


class Command(_Named):
    """Backups fetched by a command of yours (kind ``command``); options as in ``[check.source]``."""

    kind_name = "command"


#: Python class name → core kind name, for every named source class.
KINDS: Dict[str, str] = {
    cls.__name__: cls.kind_name for cls in (BaseBackup, PgDump, PgBackRest, Barman, WalG, WalE, Command)
}
