"""OpenTelemetry's OTLP/HTTP span exporter (``opentelemetry-exporter-otlp-proto-http``
1.45.2, its retries in ``opentelemetry-exporter-otlp-common`` 0.66b2), pointed at a stub
collector.

What it does, from its source (``site-packages/opentelemetry/exporter/otlp/common/http.py``
unless named):
- ``trace_exporter/__init__.py`` ``OTLPSpanExporter.export`` encodes the spans and hands
  them to ``_OTLPHTTPClient.export``, made with the default ``jitter`` (``_DEFAULT_JITTER``,
  0.2): the exporter has no argument for it.
- ``_OTLPHTTPClient.export``: up to ``_MAX_RETRIES`` (6) POSTs of the same bytes (and
  ``_submit`` resends once at once after a connection error, not exercised here), on the
  transport's one ``requests.Session`` (``exporter/http/transport/_requests.py``); a
  2xx/3xx ends it; a status in ``_RETRYABLE_STATUS_CODES`` (429, 502, 503, 504) is retried,
  any other is not; before retry ``k`` (from 0) it waits ``_compute_backoff(k)`` =
  ``2 ** k * random.uniform(1 - jitter, 1 + jitter)``, or what ``_extract_retry_after``
  reads of a ``Retry-After`` (seconds or an HTTP-date) when the answer has one; it gives
  up when that wait is longer than what is left of its ``timeout`` (``_DEFAULT_TIMEOUT``,
  10 s; 5 s here).
- The wait is ``self._shutdown_event.wait(backoff)``: an interruptible backoff on a
  ``threading.Event`` (``shutdown()`` sets it), not ``time.sleep``.  On real time
  nothing notes that wait, so the exporters' waits are never shown jittered there
  (``tests/test_paced_verdicts.py`` has them spread by their own work); on virtual time
  the wait is virtual, and held to the real time it took.
- No idempotency key and no attempt counter: a retry is the same bytes on the same
  connection (``requests.Session`` keeps it alive).

The clients wait as their source says (that is what is judged); the tests never sleep.
"""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from real_clients import judged, released_together, settled, waits

from pytest_resilience import HttpService, Resilience, ResilienceAssertionError

from .shop import HERD

pytestmark = pytest.mark.usefixtures("seeded_jitter")
JITTER_SEED = 20261205
"""``_OTLPHTTPClient._compute_backoff`` draws its jitter from the global ``random``."""

TRACES = "/v1/traces"


@pytest.fixture
def collector(resilience: Resilience) -> HttpService:
    """A stub OTLP/HTTP collector: every export is taken (an empty 200)."""
    service = resilience.http_service("collector")
    service.respond(200, body=b"")
    return service


def _span() -> ReadableSpan:
    """One ended span to export."""
    tracer = TracerProvider().get_tracer("zoo")
    with tracer.start_as_current_span("charge") as span:
        pass
    assert isinstance(span, ReadableSpan)
    return span


def _exporter(collector: HttpService, jitter: float | None = None) -> OTLPSpanExporter:
    exporter = OTLPSpanExporter(endpoint=f"{collector.url}{TRACES}", timeout=5)
    if jitter is not None:
        # The client's own parameter (``_OTLPHTTPClient(jitter=)``), which the exporter does
        # not expose: how OpenTelemetry Python exported before its backoff had jitter
        # (1.25: ``from time import sleep`` and a fixed 1, 2, 4 ... s).
        exporter._client._jitter = jitter
    return exporter


def _export_one(collector: HttpService) -> SpanExportResult:
    """One span exported by an exporter of its own (shut down after)."""
    exporter = _exporter(collector)
    try:
        return exporter.export([_span()])
    finally:
        exporter.shutdown()


def _fleet(collector: HttpService, jitter: float | None = None) -> list[SpanExportResult]:
    """HERD exporters, each exporting one span, released together; their results."""
    exporters = [_exporter(collector, jitter) for _ in range(HERD)]
    spans = [_span() for _ in range(HERD)]
    try:
        return released_together(HERD, lambda n: exporters[n].export([spans[n]]), timeout=10)
    finally:
        for exporter in exporters:
            exporter.shutdown()


def test_a_503_is_retried_after_about_a_second_on_one_connection(
    collector: HttpService,
) -> None:
    """``_OTLPHTTPClient.export``: a 503 is retryable; the retry waits ``2 ** 0`` s times
    0.8-1.2, and goes on the session's kept-alive connection: one operation of 2 attempts."""
    collector.route("POST", TRACES).fail(503, count=1)
    assert _export_one(collector) is SpanExportResult.SUCCESS

    failed, ok = settled(collector, 2)
    assert (failed.status, ok.status) == (503, 200)
    assert 0.8 <= waits([failed, ok])[0] < 1.5
    collector.assert_attempts(min=2, max=2)
    collector.assert_connections(max=1)
    with pytest.raises(ResilienceAssertionError, match=r"^operation .+ made 2 attempts"):
        collector.assert_attempts(max=1)


def test_a_400_is_not_retried(collector: HttpService) -> None:
    """``_is_retryable``: 400 is not in ``_RETRYABLE_STATUS_CODES``: one attempt, failed."""
    collector.route("POST", TRACES).fail(400, count=1)
    assert _export_one(collector) is SpanExportResult.FAILURE

    settled(collector, 1)
    collector.assert_attempts(max=1)


def test_the_retry_after_of_a_429_is_waited(collector: HttpService) -> None:
    """``_extract_retry_after``: a 429's ``Retry-After: 1`` replaces the backoff; the
    retry comes 1 s after it, no sooner."""
    collector.rate_limit(burst=1, retry_after=1)
    assert _export_one(collector) is SpanExportResult.SUCCESS

    limited, ok = settled(collector, 2)
    assert (limited.status, ok.status) == (429, 200)
    assert waits([limited, ok])[0] >= 1.0
    collector.assert_retry_after_honoured()


@pytest.mark.virtual_time
def test_a_fleet_with_the_default_jitter_is_not_called_a_storm(
    resilience: Resilience, collector: HttpService
) -> None:
    """``_compute_backoff(0)`` with ``_DEFAULT_JITTER``: five exporters' retries wait
    1 s times 0.8-1.2 each, drawn apart: jittered, never a storm (or, where the noise
    measured hides the spread, insufficient evidence).

    On virtual time, where each wait's noise is the real time it took.  On real time it is
    insufficient evidence in every run: nothing notes a wait on an event, and such waits
    are never shown jittered there (they may hold work or queueing); before that rule,
    the probe's model alone left it insufficient too (its few hundred samples floor each
    wait's chance of lying so far late at 4 in their number + 1, and jitter this narrow
    leaves too few levels apart: p = 0.006 for five exporters, 0.002 for ten, against
    the 1 in 1,000 asked)."""
    collector.route("POST", TRACES).fail(503, count=HERD)

    assert _fleet(collector) == [SpanExportResult.SUCCESS] * HERD

    settled(collector, 2 * HERD)
    collector.assert_attempts(min=2, max=2)
    judged(resilience.assert_no_retry_storm, collector)
    # A cap above the draws' 1.2 s: a retry where some wait comes within ``tolerance`` of
    # the cap is not read for jitter (the cap would flatten the draws there).
    judged(collector.assert_backoff, jitter=True, min_factor=1, max_delay=1.5)


def test_a_fleet_without_jitter_retries_in_lockstep(
    resilience: Resilience, collector: HttpService
) -> None:
    """``_compute_backoff(0)`` with ``jitter=0``: ``2 ** 0 * uniform(1, 1)``, every
    exporter waits exactly 1 s on its event: a lockstep herd, claimed as a storm."""
    collector.route("POST", TRACES).fail(503, count=HERD)

    assert _fleet(collector, jitter=0.0) == [SpanExportResult.SUCCESS] * HERD

    settled(collector, 2 * HERD)
    collector.assert_attempts(min=2, max=2)
    judged(resilience.assert_no_retry_storm, collector, claim="retry storm")
    judged(collector.assert_backoff, jitter=True, min_factor=1, claim="retry waits carry no jitter")
