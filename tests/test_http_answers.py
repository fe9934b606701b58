"""Fault answers shaped like real APIs: headers and bodies on every step, the service's
error body, waits under a second, business identity per content type, headers on records.

Driven through requests (a real client on real sockets); the official SDKs meeting
these answers are in ``examples/api_sdks``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from pytest_resilience import (
    ConfigurationError,
    HttpService,
    Resilience,
    ResilienceAssertionError,
)
from pytest_resilience.assertions import check_no_duplicate_side_effects
from pytest_resilience.http.identity import canonical_body, fingerprint
from pytest_resilience.http.records import requested_wait

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def api(resilience: Resilience) -> HttpService:
    return resilience.http_service("api")


def get(service: HttpService, path: str = "/", **kwargs: Any) -> requests.Response:
    return requests.get(service.url + path, timeout=2, **kwargs)


def post(service: HttpService, path: str = "/", **kwargs: Any) -> requests.Response:
    return requests.post(service.url + path, timeout=2, **kwargs)


# -- shaped answers ------------------------------------------------------------------------


def test_respond_sends_headers_and_a_body_of_any_content_type(api: HttpService) -> None:
    api.route("GET", "/json").respond(json={"ok": True}, headers={"Request-Id": "req_1"})
    api.route("GET", "/xml").respond(body="<ok/>", content_type="application/xml")
    api.route("GET", "/text").respond(body="ok")
    api.route("GET", "/bytes").respond(body=b"\x00\x01")

    as_json, as_xml, as_text, as_bytes = (get(api, p) for p in ("/json", "/xml", "/text", "/bytes"))

    assert as_json.json() == {"ok": True}
    assert as_json.headers["Request-Id"] == "req_1"
    assert as_json.headers["Content-Type"] == "application/json"
    assert (as_xml.text, as_xml.headers["Content-Type"]) == ("<ok/>", "application/xml")
    assert as_text.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "Content-Type" not in as_bytes.headers and as_bytes.content == b"\x00\x01"


def test_a_fault_without_a_body_sends_an_error_object_sdks_can_read(api: HttpService) -> None:
    api.fail(503, count=1)
    api.rate_limit(burst=1)

    failed, limited = get(api), get(api)

    assert failed.json()["error"]["type"] == "api_error"
    assert failed.json()["error"]["status"] == 503
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert failed.headers["Content-Type"] == "application/json"


def test_the_service_error_body_is_used_by_every_fault_that_gives_none(
    resilience: Resilience,
) -> None:
    api = resilience.http_service("api", error=lambda status: {"code": status, "kind": "x"})
    api.fail(502, count=1)
    api.rate_limit(burst=1, retry_after=1)
    api.fail(500, count=1, json={"own": True})

    assert get(api).json() == {"code": 502, "kind": "x"}
    assert get(api).json() == {"code": 429, "kind": "x"}
    assert get(api).json() == {"own": True}


def test_a_fixed_service_error_body_serves_every_status(resilience: Resilience) -> None:
    api = resilience.http_service("api", error={"message": "down"})
    api.fail(503, count=1)

    assert get(api).json() == {"message": "down"}


def test_fail_takes_headers_and_a_body(api: HttpService) -> None:
    api.fail(
        500,
        count=1,
        body="<Error><Code>SlowDown</Code></Error>",
        content_type="application/xml",
        headers={"x-should-retry": "false"},
    )

    answer = get(api)

    assert answer.status_code == 500
    assert answer.headers["x-should-retry"] == "false"
    assert answer.headers["Content-Type"] == "application/xml"
    assert answer.text == "<Error><Code>SlowDown</Code></Error>"


def test_rate_limit_sends_both_wait_headers_and_the_extra_ones(api: HttpService) -> None:
    api.rate_limit(
        burst=1, retry_after=2, retry_after_ms=150, headers={"x-ratelimit-remaining": "0"}
    )

    answer = get(api)

    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "2"
    assert answer.headers["retry-after-ms"] == "150"
    assert answer.headers["x-ratelimit-remaining"] == "0"
    limited = api.settled()[0]
    assert (limited.retry_after, limited.retry_after_delay) == ("2", 0.15)
    assert limited.wait_header == "retry-after-ms"


def test_a_token_bucket_answers_in_the_given_shape(api: HttpService) -> None:
    api.rate_limit(rate=1, burst=1, json={"error": "slow down"}, headers={"X-Limit": "1"})

    first, second = get(api), get(api)

    assert first.status_code == 200
    assert second.status_code == 429
    assert second.json() == {"error": "slow down"}
    assert (second.headers["X-Limit"], second.headers["Retry-After"]) == ("1", "1")


def test_a_delay_with_a_status_answers_it_late_and_applies_nothing(api: HttpService) -> None:
    api.delay(0.05, count=1, status=504, json={"error": "gateway timeout"})

    started = time.monotonic()
    answer = post(api, "/charges", json={"amount": 1})
    took = time.monotonic() - started

    assert answer.status_code == 504 and answer.json() == {"error": "gateway timeout"}
    assert took >= 0.05
    (held,) = api.settled()
    assert (held.step, held.scripted) == ("delay", True)
    assert api.effects == []


def test_a_delay_without_a_status_reshapes_the_usual_answer(api: HttpService) -> None:
    api.respond(json={"id": 1}, headers={"X-Kept": "yes"})
    api.delay(0, count=1, headers={"X-Slow": "1"})

    answer = get(api)

    assert answer.json() == {"id": 1}
    assert (answer.headers["X-Slow"], answer.headers["X-Kept"]) == ("1", "yes")


def test_a_cut_answer_of_a_given_shape_never_arrives_whole(api: HttpService) -> None:
    api.cut(count=1, status=200, json={"id": "x" * 400})

    with pytest.raises(requests.exceptions.RequestException):
        get(api)

    (cut,) = api.settled()
    assert (cut.status, cut.step, cut.delivered) == (200, "cut", False)


def test_route_faults_take_the_shape_for_their_route_only(api: HttpService) -> None:
    api.route("POST", "/charges").fail(409, json={"error": "lock_timeout"})

    assert post(api, "/charges").json() == {"error": "lock_timeout"}
    assert get(api, "/charges").status_code == 200


def test_http_faults_marker_takes_the_shape(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, requests

        @pytest.fixture
        def api(resilience):
            return resilience.http_service("api")

        @pytest.mark.http_faults("api", 502, count=1, json={"e": 1}, headers={"X-Why": "test"})
        def test_it(api):
            answer = requests.get(api.url, timeout=2)
            assert answer.status_code == 502 and answer.json() == {"e": 1}
            assert answer.headers["X-Why"] == "test"
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_bad_shape_in_a_marker_fails_the_test_naming_the_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.rate_limited("api", burst=1, retry_after=0.5)
        def test_half(resilience):
            resilience.http_service("api")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*@pytest.mark.rate_limited: retry_after=0.5 is not whole seconds*retry_after_ms=500*"]
    )


# -- waits under a second --------------------------------------------------------------------


def test_retry_after_of_whole_seconds_as_a_float_is_accepted(api: HttpService) -> None:
    api.rate_limit(burst=1, retry_after=2.0)

    assert get(api).headers["Retry-After"] == "2"


def test_retry_after_as_an_aware_datetime_is_an_http_date(api: HttpService) -> None:
    api.rate_limit(burst=1, retry_after=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))

    assert get(api).headers["Retry-After"] == "Tue, 01 Jan 2030 00:00:00 GMT"


def test_the_millisecond_header_is_read_before_retry_after() -> None:
    assert requested_wait([("Retry-After", "3"), ("retry-after-ms", "250")], lambda: 0.0) == (
        0.25,
        "retry-after-ms",
    )
    assert requested_wait([("Retry-After", "3"), ("retry-after-ms", "soon")], lambda: 0.0) == (
        3.0,
        "Retry-After",
    )
    assert requested_wait([("retry-after-ms", "nan")], lambda: 0.0) == (None, None)
    assert requested_wait([], lambda: 0.0) == (None, None)


def retry_loop(service: HttpService, wait: Callable[[requests.Response], float]) -> None:
    """A client retrying a GET until it answers 200, waiting ``wait(answer)`` between tries."""
    while (answer := get(service)).status_code != 200:
        time.sleep(wait(answer))  # the client's own wait: what the verdict judges


def test_a_client_honouring_retry_after_ms_passes_though_retry_after_asks_more(
    api: HttpService,
) -> None:
    api.rate_limit(burst=2, retry_after=5, retry_after_ms=100)

    retry_loop(api, lambda answer: float(answer.headers["retry-after-ms"]) / 1000)

    api.assert_retry_after_honoured()


def test_a_client_ignoring_retry_after_ms_is_caught_naming_the_header(api: HttpService) -> None:
    api.rate_limit(burst=1, retry_after_ms=1000)

    retry_loop(api, lambda answer: 0.01)

    with pytest.raises(ResilienceAssertionError, match=r"whose retry-after-ms asked for 1 s"):
        api.assert_retry_after_honoured()


# -- business identity per content type ---------------------------------------------------


def test_form_fields_in_another_order_are_the_same_action() -> None:
    assert canonical_body(b"a=1&b=2", FORM) == canonical_body(b"b=2&a=1", FORM)
    assert canonical_body(b"a=1&b=2", FORM) != canonical_body(b"a=1&b=3", FORM)
    assert canonical_body(b"a=1+2", FORM) == canonical_body(b"a=1%202", FORM)


def test_the_values_of_a_repeated_form_field_keep_their_order() -> None:
    assert canonical_body(b"tag=x&tag=y", FORM) != canonical_body(b"tag=y&tag=x", FORM)
    assert canonical_body(b"tag=x&n=1&tag=y", FORM) == canonical_body(b"n=1&tag=x&tag=y", FORM)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    prepared = requests.Request("POST", "http://x/", data=fields, files=files).prepare()
    assert isinstance(prepared.body, bytes)
    return prepared.body, prepared.headers["Content-Type"]


def test_multipart_parts_compare_by_field_and_file_hash() -> None:
    one = multipart({"purpose": "batch", "n": "1"}, {"file": ("a.jsonl", b"{}\n")})
    same = multipart({"n": "1", "purpose": "batch"}, {"file": ("renamed.jsonl", b"{}\n")})
    other_file = multipart({"purpose": "batch", "n": "1"}, {"file": ("a.jsonl", b"[]\n")})

    assert one[1] != same[1]  # another boundary
    assert canonical_body(*one) == canonical_body(*same)
    assert canonical_body(*one) != canonical_body(*other_file)
    assert canonical_body(*one).startswith("multipart:")


def test_json_is_canonical_and_other_bodies_compare_by_bytes() -> None:
    assert canonical_body(b'{"b": 1, "a": 2}', "application/json") == '{"a":2,"b":1}'
    assert canonical_body(b'{"b": 1, "a": 2}', None) == '{"a":2,"b":1}'
    assert canonical_body(b"\x00raw", "application/octet-stream").startswith("sha256:")
    assert canonical_body(b"--broken", "multipart/form-data; boundary=zz").startswith("sha256:")
    assert fingerprint("POST", "/x", b"") == "POST /x"


def test_a_form_encoded_action_sent_twice_in_another_order_is_a_duplicate(
    api: HttpService,
) -> None:
    post(api, "/charges", data={"amount": "1999", "currency": "eur"})
    post(api, "/charges", data={"currency": "eur", "amount": "1999"})

    with pytest.raises(ResilienceAssertionError, match="side effect applied 2 times"):
        api.assert_no_duplicate_side_effects()
    # key= still decides when given: here each effect is its own action.
    check_no_duplicate_side_effects(api.effects, key=lambda effect: effect.exchange)


def test_a_multipart_upload_sent_twice_is_a_duplicate(api: HttpService) -> None:
    for name in ("a.csv", "b.csv"):
        post(api, "/files", files={"file": (name, b"id,amount\n1,2\n")}, data={"kind": "ledger"})

    with pytest.raises(ResilienceAssertionError, match="side effect applied 2 times"):
        api.assert_no_duplicate_side_effects()


# -- headers on the records and in the reports -----------------------------------------------


def test_exchanges_carry_the_headers_of_both_sides(api: HttpService) -> None:
    api.respond(json={}, headers={"Request-Id": "req_9"})

    answer = get(api, headers={"X-Trace": "t1"})

    assert answer.headers["Request-Id"] == "req_9"
    (exchange,) = api.settled()
    assert exchange.header("X-Trace") == "t1"
    assert exchange.answer_header("request-id") == "req_9"
    assert ("Content-Length", "2") not in exchange.answer_headers  # framing left out


def test_the_json_report_has_both_sides_headers_with_credentials_hidden(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import requests

        def test_it(resilience):
            api = resilience.http_service("api")
            api.rate_limit(burst=1, retry_after_ms=5, headers={"X-Why": "test"})
            auth = {"Authorization": "Bearer sk-secret", "X-Trace": "t1"}
            for _ in range(2):
                requests.get(api.url, headers=auth, timeout=2)
            api.settled()
            assert False, "keep the timeline"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--resilience-report=out/r.json")
    result.assert_outcomes(failed=1)

    report = json.loads((pytester.path / "out" / "r.json").read_text())
    first = report["tests"][0]["services"][0]["exchanges"][0]
    sent = dict(first["headers"])  # as h11 hands them over: names lower-cased
    assert sent["authorization"] == "<redacted>" and sent["x-trace"] == "t1"
    assert dict(first["answer_headers"])["X-Why"] == "test"
    assert (first["wait_header"], first["retry_after_s"]) == ("retry-after-ms", 0.005)
    svg = next((pytester.path / "out").glob("**/*.svg")).read_text()
    assert "X-Why: test" in svg and "x-trace: t1" in svg and "sk-secret" not in svg


# -- bad arguments: one sentence, at the call ----------------------------------------------


BAD: list[tuple[Callable[[HttpService], Any], str]] = [
    (lambda s: s.respond(body=b"x", content_type="json"), r"content_type must be a media type"),
    (lambda s: s.respond(body=b"x", content_type=5), r"content_type must be a media type"),
    (lambda s: s.respond(content_type="text/plain"), r"content_type= describes a body"),
    (
        lambda s: s.respond(body="x", content_type="text/csv", headers={"content-type": "a/b"}),
        r"the content type is given twice",
    ),
    (lambda s: s.respond(headers=[("X-A", "1")]), r"headers must be a mapping"),
    (lambda s: s.fail(headers={"X-A": 1}), r"header 'X-A' must have a str value"),
    (lambda s: s.fail(headers={"X-A": "caf\u00e9"}), r"header 'X-A' must have a str value"),
    (lambda s: s.fail(headers={"X-A": " 1"}), r"without leading or trailing spaces"),
    (lambda s: s.fail(headers={"X-A\n": "1"}), r"header name 'X-A\\n' is not a valid"),
    (lambda s: s.fail(headers={"X-A": "1", "x-a": "2"}), r"header 'x-a' is given twice"),
    (
        lambda s: s.respond(body="x", content_type="text/plain;\r\ncharset=utf-8"),
        r"content_type must be a media type",
    ),
    (lambda s: s.fail(headers={"Content-Length": "3"}), r"set by the HTTP layer"),
    (lambda s: s.respond(body=123), r"body must be bytes or str"),
    (lambda s: s.fail(json=object()), r"json must be JSON data"),
    (lambda s: s.fail(json={"a": math.nan}), r"json must be JSON data"),
    (lambda s: s.respond(204, json={"a": 1}), r"a 204 answer carries no body"),
    (lambda s: s.respond(304, body="x"), r"a 304 answer carries no body"),
    (lambda s: s.fail(200), r"fail\(\) answers an error status \(400 to 599\), got 200"),
    (lambda s: s.rate_limit(burst=1, status=302), r"rate_limit\(\) answers an error status"),
    (lambda s: s.delay(0, status=204, body="x"), r"a 204 answer carries no body"),
    (lambda s: s.rate_limit(burst=1, retry_after=0.5), r"retry_after=0.5 is not whole seconds"),
    (lambda s: s.rate_limit(burst=1, retry_after=math.inf), r"retry_after must be a whole"),
    (lambda s: s.rate_limit(burst=1, retry_after=math.nan), r"retry_after must be a whole"),
    (lambda s: s.rate_limit(burst=1, retry_after_ms=-1), r"retry_after_ms must be a finite"),
    (lambda s: s.rate_limit(burst=1, retry_after_ms=math.nan), r"retry_after_ms must be a finite"),
    (lambda s: s.rate_limit(rate=math.inf), r"rate \(requests per second\) must be a finite"),
    (lambda s: s.rate_limit(rate=math.nan), r"rate \(requests per second\) must be a finite"),
    (lambda s: s.rate_limit(rate="2"), r"rate \(requests per second\) must be a finite"),
    (lambda s: s.rate_limit(rate=2, retry_after_ms=5), r"drop retry_after= and retry_after_ms="),
    (
        lambda s: s.rate_limit(burst=1, retry_after=1, headers={"retry-after": "9"}),
        r"header 'Retry-After' is set by the rate_limit fault's own arguments",
    ),
    (lambda s: s.delay(math.nan), r"delay must be a finite number of seconds"),
    (
        lambda s: s.fail(rate=math.nan),
        r"rate \(the share of requests to fail\) must be a number from 0 to 1",
    ),
]


@pytest.mark.parametrize(("call", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_shape_arguments_are_one_sentence_at_the_call(
    api: HttpService, call: Callable[[HttpService], Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        call(api)

    text = str(raised.value)
    assert "\n" not in text and text.endswith(".")
    assert api.faults == []


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (object(), r"error must be JSON data"),
        (lambda status: {"bad": object()}, r"the service's error body for status 503 must be"),
        (lambda status: {}[status], r"the service's error= function failed for status 503"),
    ],
    ids=["not-json", "returns-not-json", "raises"],
)
def test_a_bad_service_error_body_is_one_sentence_at_the_call_that_meets_it(
    resilience: Resilience, error: Any, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        api = resilience.http_service("api", error=error)
        api.fail(503)


@pytest.mark.parametrize("header", [5, None, "Bad Name"])
def test_a_bad_idempotency_header_is_refused_at_the_call(
    resilience: Resilience, header: Any
) -> None:
    with pytest.raises(ConfigurationError, match=r"idempotency_header .* is not a valid HTTP"):
        resilience.http_service("api", idempotency_header=header)


def test_a_body_reshape_onto_an_answer_without_body_fails_the_test_saying_why(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import requests

        def test_it(resilience):
            api = resilience.http_service("api")
            api.respond(204)
            api.delay(0, count=1, json={"late": True})
            assert requests.get(api.url, timeout=2).status_code == 500
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*cannot go on the 204 answer a delay or cut passed on*"])


def test_a_cut_answer_without_body_stops_inside_the_status_code(api: HttpService) -> None:
    api.cut(count=1, status=429, headers={"Retry-After": "1"})

    with pytest.raises(requests.exceptions.RequestException):
        requests.head(api.url, timeout=2)

    (cut,) = api.settled()
    assert (cut.method, cut.status, cut.delivered) == ("HEAD", 429, False)


def test_a_replay_sends_the_stored_answer_without_a_delays_reshaping(api: HttpService) -> None:
    """As the README says: the stub stores its answer before a delay or cut reshapes it."""
    api.respond(201, json={"id": "ch_1"})
    api.delay(0, count=1, headers={"X-Slow": "1"})
    key = {"Idempotency-Key": "k1"}

    first, replay = post(api, "/charges", headers=key), post(api, "/charges", headers=key)

    assert first.headers.get("X-Slow") == "1" and "X-Slow" not in replay.headers
    assert replay.json() == first.json()
    assert [e.step for e in api.settled()] == ["respond", "replay"]


def test_the_http_markers_help_shows_their_step_builders_arguments() -> None:
    """The help text is kept apart (loading the plugin imports no HTTP code); it must not drift."""
    import inspect

    from pytest_resilience.http.script import fail_step, rate_limit_step
    from pytest_resilience.markers import HTTP_SIGNATURES, INTERNAL

    for marker, build in (("rate_limited", rate_limit_step), ("http_faults", fail_step)):
        parameters = inspect.signature(build).parameters.values()
        public = inspect.Signature([p for p in parameters if p.name not in INTERNAL])
        shown = str(public.replace(return_annotation=inspect.Signature.empty))
        assert HTTP_SIGNATURES[marker] == _without_annotations(shown), marker


def _without_annotations(signature: str) -> str:
    """``(burst: 'int | None' = None, *, rate: ...)`` -> ``burst=None, *, rate=...``."""
    import re

    return re.sub(r": '[^']*'", "", signature)[1:-1].replace(" = ", "=")
