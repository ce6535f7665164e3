"""Restore targets: where a backup is brought up, cut off from production.

Every target kind of the core is reachable through :class:`Target` with the same option names as a
``[check.target]`` table; unknown options raise :class:`~restorecheck.ConfigError`::

    rc.targets.Local(settings={"work_mem": "64MB"})
    rc.targets.Docker(image="postgres:{major}")
    rc.targets.Target("docker", image="postgres:{major}")        # the same
"""

from typing import Any, ClassVar, Dict, Type, TypeVar, cast

from ._native import Target

_T = TypeVar("_T", bound="_Named")

__all__ = ["Target", "Local", "Docker", "KINDS"]


class _Named(Target):
    """A target whose kind is fixed by the class (see :data:`KINDS`)."""

    kind_name: ClassVar[str] = ""

    def __new__(cls: Type[_T], **options: Any) -> _T:
        """Builds the target of kind ``cls.kind_name`` from ``options``."""
        return cast(_T, Target.__new__(cls, cls.kind_name, **options))


class Local(_Named):
    """This machine's PostgreSQL binaries, matched to the backup's version (kind ``local``, the default).

    Options: ``bin_dir``, ``os_user``, ``superuser``, ``stop_timeout``, ``settings``.
    """

    kind_name = "local"


class Docker(_Named):
    """A container without network (kind ``docker``); the image is never pulled.

    Options: ``image`` (``"postgres:{major}"``), ``user``, ``os_user``, ``superuser``, ``stop_timeout``, ``settings``.
    """

    kind_name = "docker"


#: Python class name → core kind name, for every named target class.
KINDS: Dict[str, str] = {cls.__name__: cls.kind_name for cls in (Local, Docker)}
