"""The report of a run, mirroring the JSON contract (version 1) of ``restorecheck run --format json``.

A failed check is a value here, never an exception: look at :attr:`Report.passed` and
:attr:`Report.verdict`. Fields are only ever added to the JSON, so :meth:`Report.to_dict` gives
everything, including fields newer than these classes.
"""

import json
from typing import Any, Dict, List, Optional

from ._native import NativeReport

__all__ = ["Report", "CheckResult", "AssertionResult"]


class AssertionResult:
    """One assertion's result: ``name``, ``verdict`` (pass/fail/error), ``observed``, ``expected``, ``message``."""

    def __init__(self, doc: Dict[str, Any]) -> None:
        """Wraps one entry of a check's ``assertions`` list."""
        self._doc = doc
        #: The assertion's name.
        self.name: str = doc["name"]
        #: ``"pass"``, ``"fail"`` or ``"error"``.
        self.verdict: str = doc["verdict"]
        #: What was observed (a JSON value), if anything.
        self.observed: Any = doc.get("observed")
        #: What was expected, in words.
        self.expected: Optional[str] = doc.get("expected")
        #: Why it failed or errored; None when it passed.
        self.message: Optional[str] = doc.get("message")

    @property
    def passed(self) -> bool:
        """True when the verdict is ``pass``."""
        return self.verdict == "pass"

    def to_dict(self) -> Dict[str, Any]:
        """The JSON object of this assertion."""
        return json.loads(json.dumps(self._doc))  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        """``AssertionResult(name=…, verdict=…)``."""
        return f"AssertionResult(name={self.name!r}, verdict={self.verdict!r}, message={self.message!r})"


class CheckResult:
    """One check's result, as in the JSON ``checks`` list."""

    def __init__(self, doc: Dict[str, Any]) -> None:
        """Wraps one entry of the report's ``checks`` list."""
        self._doc = doc
        #: The check's name.
        self.name: str = doc["name"]
        #: ``"pass"``, ``"fail"`` or ``"error"``.
        self.verdict: str = doc["verdict"]
        #: The first thing that went wrong (``phase``, ``message``, maybe ``log_tail``), or None.
        self.failure: Optional[Dict[str, Any]] = doc.get("failure")
        #: The restored backup (``id``, ``taken_at``, ``source``, ``kind``, ``size_bytes``, …).
        self.backup: Dict[str, Any] = doc.get("backup") or {}
        #: Where recovery ended (``end_lsn``, ``last_replayed_at``, ``timeline``, ``server_version``, …).
        self.recovery: Dict[str, Any] = doc.get("recovery") or {}
        #: Assertion results, in order.
        self.assertions: List[AssertionResult] = [AssertionResult(a) for a in doc.get("assertions") or []]
        #: Seconds per phase (None for phases that did not run) and ``total``.
        self.timings: Dict[str, Optional[float]] = doc.get("timings") or {}
        #: Things a person should look at even when the check passed.
        self.warnings: List[str] = doc.get("warnings") or []
        #: What restorecheck did that is worth knowing.
        self.notes: List[str] = doc.get("notes") or []

    @property
    def passed(self) -> bool:
        """True when the verdict is ``pass``."""
        return self.verdict == "pass"

    def to_dict(self) -> Dict[str, Any]:
        """The JSON object of this check."""
        return json.loads(json.dumps(self._doc))  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        """``CheckResult(name=…, verdict=…)``."""
        return f"CheckResult(name={self.name!r}, verdict={self.verdict!r})"


class Report:
    """The result of a run: ``passed``, ``verdict``, ``checks``, ``timings``, ``to_json()``, ``to_dict()``."""

    def __init__(self, native: NativeReport) -> None:
        """Wraps the native report of a finished run."""
        self._native = native
        self._json = native.to_json()
        doc: Dict[str, Any] = json.loads(self._json)
        self._doc = doc
        #: Version of the JSON contract.
        self.version: int = doc["version"]
        #: ``"pass"`` only when every check passed; ``"error"`` beats ``"fail"``.
        self.verdict: str = doc["verdict"]
        #: The run's id (work dirs carry it).
        self.run_id: str = doc["run_id"]
        #: When the run started (RFC 3339).
        self.started_at: str = doc["started_at"]
        #: Version of restorecheck that ran.
        self.restorecheck_version: str = doc["restorecheck_version"]
        #: One result per check.
        self.checks: List[CheckResult] = [CheckResult(c) for c in doc["checks"]]

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return self.verdict == "pass"

    @property
    def timings(self) -> Dict[str, float]:
        """Seconds per phase summed over the checks (for one check: that check's timings)."""
        out: Dict[str, float] = {}
        for c in self.checks:
            for phase, secs in c.timings.items():
                if secs is not None:
                    out[phase] = out.get(phase, 0.0) + secs
        return out

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this report: 0 passed, 1 a check failed, 2 could not be carried out."""
        return self._native.exit_code

    def check(self, name: str) -> CheckResult:
        """The result of the check called ``name`` (KeyError when there is none)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> str:
        """The JSON document, exactly as ``restorecheck run --format json`` prints it."""
        return self._json

    def to_dict(self) -> Dict[str, Any]:
        """The JSON document as a dict (a fresh copy; ``json.loads(to_json())`` equals it)."""
        return json.loads(self._json)  # type: ignore[no-any-return]

    def to_text(self) -> str:
        """The text report a person reads in a cron mail (as ``restorecheck run`` prints it)."""
        return self._native.to_text()

    def __repr__(self) -> str:
        """``Report(verdict=…, checks=[…])``."""
        return f"Report(verdict={self.verdict!r}, checks={self.checks!r})"
