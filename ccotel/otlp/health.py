"""How one exporter is doing, as /healthz, the metrics and the log tell it.

``state`` (the contract in HELPERS.md):

- ``off``: the export is not running;
- ``waiting``: no endpoint named by the user and nothing has answered at the
  default one yet: the data waits (spans in the transcripts). A zero-configuration
  install, not an alarm: one info line, no warning, no error counted;
- ``ok``: the last attempt succeeded (or none has failed yet);
- ``failing``: an endpoint the user named, or one that answered, fails. One warning
  per distinct status while it lasts (naming the status and the endpoint), one info
  line when it works again; every failed attempt counts in ``errors``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from ccotel.otlp.backoff import Backoff
from ccotel.otlp.transport import REFUSED, ExportError


def hint(exc: ExportError) -> str:
    if exc.local:
        return "a fault on this machine (ccotel's state), not the collector's"
    s = exc.status
    if any(x in s for x in ("401", "403", "UNAUTHENTICATED", "PERMISSION_DENIED")):
        return "check the credentials (otlp_headers, OTEL_EXPORTER_OTLP_HEADERS)"
    if any(x in s for x in ("404", "405", "UNIMPLEMENTED", "NOT_FOUND")):
        return (
            "check the endpoint (otlp_endpoint, OTEL_EXPORTER_OTLP_ENDPOINT) and the protocol "
            "(otlp_protocol: an OTLP/HTTP URL ends in /v1/traces or /v1/metrics)"
        )
    if exc.kind == REFUSED:
        return "check the OTLP settings (docs/traces.md)"
    return "is the collector running and reachable?"


class ExportHealth:
    def __init__(
        self,
        log: Any,
        signal: str,
        endpoint: str,
        configured: bool,
        cap: float,
        *,
        waiting_note: str = "",
        failing_note: str = "",
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ):
        self.log, self.signal, self.endpoint, self.configured = log, signal, endpoint, configured
        self.waiting_note, self.failing_note = waiting_note, failing_note
        self.backoff = Backoff(cap, clock=clock, rand=rand)
        self.answered = False  # something at the endpoint has answered at least once
        self.state = "ok" if configured else "waiting"
        self.error: str | None = None
        self.errors = 0  # failed attempts while failing
        self._warned: set[str] = set()
        self._told_waiting = False
        self.last_local = False  # the last failure was on this machine, not the collector's

    # --- the exporter reports ------------------------------------------------

    def failed(self, exc: ExportError) -> None:
        delay = self.backoff.failed(exc.retry_after)
        self.answered = self.answered or exc.answered
        self.last_local = exc.local
        if not (self.configured or self.answered or exc.local):
            self.state, self.error = "waiting", None
            if not self._told_waiting:
                self._told_waiting = True
                self.log.info(
                    f"no OTLP collector at {self.endpoint} yet{self.waiting_note}",
                    status=str(exc)[:200],
                )
            return
        self.state = "failing"
        self.error = f"{exc.status} from {self.endpoint}" + (
            f": {exc.detail[:200]}" if exc.detail else ""
        )
        self.errors += 1
        if exc.status not in self._warned:
            self._warned.add(exc.status)
            self.log.warning(
                f"cannot export {self.signal}{self.failing_note}; retrying with backoff",
                endpoint=self.endpoint,
                error=str(exc)[:300],
                hint=hint(exc),
            )
        else:
            self.log.debug(
                f"{self.signal} export still failing",
                endpoint=self.endpoint,
                error=str(exc)[:300],
                retry_in=round(delay, 1),
            )

    def ok(self, contacted: bool = True) -> None:
        """An attempt succeeded; ``contacted=False``: nothing was sent, but the local fault
        that failed the last one is gone."""
        if contacted:
            self.answered = True
        if self.state == "failing":
            self.log.info(
                f"{self.signal} export works again",
                endpoint=self.endpoint,
                failed_attempts=self.backoff.failures,
            )
        elif self.state == "waiting" and self._told_waiting and contacted:
            self.log.info(f"OTLP collector found at {self.endpoint}; exporting {self.signal}")
        self.last_local = False
        self.state = "ok" if (self.configured or self.answered) else "waiting"
        self.error = None
        self._warned.clear()
        self.backoff.ok()

    # --- the daemon asks -----------------------------------------------------

    def ready(self) -> bool:
        return self.backoff.ready()

    def wait_time(self) -> float:
        return self.backoff.wait_time()

    def as_dict(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "configured": self.configured,
            "endpoint": self.endpoint,
            "state": self.state,
            "error": self.error,
            "failing": self.state == "failing",
            "retry_in_seconds": round(self.backoff.wait_time(), 1) if self.backoff.failures else 0,
        }


def off(configured: bool, endpoint: str, error: str | None = None) -> dict[str, Any]:
    """The health of an exporter that does not run (error: why, when it should)."""
    return {
        "enabled": error is not None,
        "configured": configured,
        "endpoint": endpoint,
        "state": "failing" if error else "off",
        "error": error,
        "failing": error is not None,
    }
