# Specifications have no body, as in pytest's own hookspec.py.
# mypy: disable-error-code="empty-body"
"""Hooks other plugins (or a ``conftest.py``) implement to extend pytest-resilience.

Registered by the plugin's ``pytest_addhooks``; implement them like any pytest hook,
by name, in a plugin or a ``conftest.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .faults.kinds import FaultKind
    from .report.record import TestRecord
    from .toxiproxy.backends import Backend


@pytest.hookspec(historic=True)
def pytest_resilience_fault_kinds() -> list[FaultKind]:
    """Return fault kinds to add, as :class:`pytest_resilience.FaultKind` objects.

    A kind has a name, a function that validates its arguments (raising
    :class:`pytest_resilience.ConfigurationError` with what to pass instead) and
    returns a :class:`pytest_resilience.FaultPlan` (the toxics to add), and the help
    line of its marker.  It then works where the built-in kinds do:
    ``service.fault("packet_loss", rate=0.2)``,
    ``resilience.fault("api", "packet_loss", rate=0.2)`` and
    ``@pytest.mark.packet_loss("api", rate=0.2, after=0.5, duration=1)``, a marker
    registered with its signature (``--strict-markers`` accepts it, ``pytest --markers``
    lists it) and validated at collection like the built-in ones.

    Called at ``pytest_configure`` time, and for plugins and ``conftest.py`` files
    registered later (it is a historic hook).  A name taken by a built-in kind, by
    another plugin's kind or by another marker is a usage error.

    Example::

        from pytest_resilience import ConfigurationError, FaultKind, FaultPlan, ToxicSpec


        def packet_loss(rate, retransmit_ms=200, *, stream="downstream"):
            if not 0 <= rate <= 1:
                raise ConfigurationError(f"packet_loss: rate must be 0-1, got {rate!r}.")
            return FaultPlan(
                "packet_loss",
                (
                    ToxicSpec("timeout", stream, (("timeout", 0),), toxicity=rate),
                    ToxicSpec("latency", stream, (("latency", retransmit_ms),)),
                ),
                detail=f"rate={rate} retransmit_ms={retransmit_ms}",
            )


        def pytest_resilience_fault_kinds():
            return [FaultKind("packet_loss", packet_loss, "lose a share of connections")]
    """


def pytest_resilience_event(event: Any, item: pytest.Item) -> None:
    """Observe test ``item``'s events as they happen.

    ``event`` is one of

    - :class:`pytest_resilience.FaultEvent`: a fault applied to or healed on a service;
    - :class:`pytest_resilience.ConnectionEvent`: a client connection through a
      service opened, closed or was reset;
    - :class:`pytest_resilience.ExchangeEvent`: a step of an HTTP exchange, with the
      :class:`~pytest_resilience.Exchange` as it stood then: ``received`` (the request
      arrived), ``answered`` (the answer handed to the connection), ``ended`` (the
      answer's last byte written, the answer cut, or the
      connection lost first; ``delivered`` is ``None`` here, ``False`` for a cut), then
      ``delivered`` or ``lost`` once the plugin learns whether the answer reached the
      client, which it does when it reads the records (a verdict,
      ``service.exchanges``, or the report at the end of the test);
    - :class:`pytest_resilience.Effect`: the stub applied a side effect;
    - :class:`pytest_resilience.RunEvent`: a ``resilience.drive`` or ``load`` returned;
    - :class:`pytest_resilience.VerdictEvent`: a resilience assertion held or broke;
    - any other event added to the test's timeline (``resilience.timeline``), such as
      an ``IntentEvent`` a retry library's adapter records: check with ``isinstance``.

    Events arrive in the order the plugin recorded them, one at a time, on a thread
    of the plugin's, not the test's (connections and exchanges happen on the event
    loop's thread, marker faults on a timer's), so an implementation must be
    thread-safe towards the test and should return quickly; one that takes over 5 s
    fails the test at teardown.  What it raises does not stop the plugin's threads: it
    is kept and re-raised in the test's thread when its ``resilience`` fixture is torn
    down, failing the test there; ``resilience.timeline.flush()`` waits for the events
    so far to be delivered and re-raises sooner.

    Example (count connections per test, for a report section)::

        import pytest
        from pytest_resilience import ConnectionEvent

        CONNECTIONS = pytest.StashKey[int]()


        def pytest_resilience_event(event, item):
            if isinstance(event, ConnectionEvent) and event.kind == "opened":
                item.stash[CONNECTIONS] = item.stash.get(CONNECTIONS, 0) + 1
    """


@pytest.hookspec(firstresult=True)
def pytest_resilience_backend(config: pytest.Config) -> Backend | str | None:
    """Choose the Toxiproxy backend instead of ``--toxiproxy``.

    Called once, when the first test that needs the backend starts (never for a run
    that needs none).  Return one of

    - a ``--toxiproxy`` choice: ``"embedded"``, ``"spawn"``, ``"auto"`` or an
      ``http://host:port`` URL, started as that option would be;
    - a :class:`pytest_resilience.toxiproxy.backends.Backend` you started (e.g. with
      ``start_backend``); the session then owns it and closes it at the end;
    - ``None`` to keep ``--toxiproxy``'s choice.

    Example (the embedded engine unless the command line names a server)::

        def pytest_resilience_backend(config):
            if config.getoption("--toxiproxy") is None:
                return "embedded"
            return None
    """


def pytest_resilience_report_sections(
    item: pytest.Item, record: TestRecord
) -> list[tuple[str, str]]:
    """Return sections, as ``(title, text)`` pairs, to add to test ``item``'s resilience report.

    ``record`` is the test's :class:`~pytest_resilience.report.record.TestRecord`: its
    faults, services, runs and verdicts (the JSON report holds it as ``record.to_json()``).  Called once per test that used the
    ``resilience`` fixture, after its teardown; every implementation's sections are
    kept, in order.

    Example::

        def pytest_resilience_report_sections(item, record):
            lost = sum(s.lost_answers for s in record.http_services)
            return [("lost answers", f"{lost} answer(s) never reached the client")]
    """
