"""restorecheck: prove PostgreSQL backups restore.

Minimal binding for now: ``run_config(path)`` runs a restorecheck.toml and returns the report
as a dict (the same document as ``restorecheck run --format json``).
"""

import json
from typing import Any, Dict

from ._native import __version__, run_config_json

__all__ = ["__version__", "run_config"]


def run_config(path: str) -> Dict[str, Any]:
    """Run every check in the TOML file at ``path`` and return the JSON report as a dict."""
    return json.loads(run_config_json(path))
