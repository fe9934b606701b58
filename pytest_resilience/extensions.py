"""The plugin's side of its hooks (``hookspecs.py``): kinds, backend choice and live events.

Each hook's answer is checked here, so a plugin that returns the wrong thing gets
one sentence saying what it returned and what to return instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from .errors import BackendError, ResilienceError
from .faults.kinds import KINDS, FaultKind
from .markers import FAULT_MARKERS, marker_help
from .options import OPTION_BACKEND, parse_backend

if TYPE_CHECKING:
    from .resilience import Resilience
    from .session import ResilienceSession
    from .toxiproxy.backends import Backend

_EXAMPLE = 'e.g. [FaultKind("packet_loss", packet_loss, "lose a share of connections")]'
# pytest's own markers: its plugins register them after this one's pytest_configure runs.
_PYTEST_MARKERS = frozenset(
    {
        "filterwarnings",
        "parametrize",
        "skip",
        "skipif",
        "tryfirst",
        "trylast",
        "usefixtures",
        "xfail",
    }
)


def configure(config: pytest.Config, session: ResilienceSession) -> None:
    """Ask plugins for fault kinds (now, and as later ones register) and for the backend."""
    taken = {line.split(":", 1)[0].split("(", 1)[0].strip() for line in config.getini("markers")}
    taken |= _PYTEST_MARKERS

    def register(result: object) -> None:
        for kind in _fault_kinds(result):
            _check_name(kind, session.fault_kinds, taken)
            session.fault_kinds[kind.name] = kind
            taken.add(kind.name)
            config.addinivalue_line("markers", marker_help(kind.name, session.fault_kinds))

    config.hook.pytest_resilience_fault_kinds.call_historic(kwargs={}, result_callback=register)
    session.choose_backend = _backend_chooser(config)


def _fault_kinds(result: object) -> list[FaultKind]:
    if not isinstance(result, (list, tuple)):
        raise pytest.UsageError(
            f"pytest_resilience_fault_kinds returned {result!r} ({type(result).__name__}); "
            f"return a list of pytest_resilience.FaultKind, {_EXAMPLE}."
        )
    for kind in result:
        if not isinstance(kind, FaultKind):
            raise pytest.UsageError(
                f"pytest_resilience_fault_kinds returned a list holding {kind!r} "
                f"({type(kind).__name__}); each item must be a pytest_resilience.FaultKind, "
                f"{_EXAMPLE}."
            )
    return list(result)


def _check_name(kind: FaultKind, known: dict[str, FaultKind], taken: set[str]) -> None:
    name = kind.name
    if name in KINDS or name in FAULT_MARKERS:
        raise pytest.UsageError(
            f"pytest_resilience_fault_kinds: fault kind {name!r} is built in; give yours "
            f"another name (e.g. 'my_{name}')."
        )
    if name in known:
        raise pytest.UsageError(
            f"pytest_resilience_fault_kinds: fault kind {name!r} is added twice (by two "
            "implementations, or twice by one); keep one, or rename the other."
        )
    if name in taken:
        raise pytest.UsageError(
            f"pytest_resilience_fault_kinds: fault kind {name!r} would be a marker, but "
            f"@pytest.mark.{name} is already registered (by pytest, a plugin or the ini "
            "file); give the kind another name."
        )


def _backend_chooser(config: pytest.Config) -> Callable[[], Backend | str | None]:
    def choose() -> Backend | str | None:
        from .toxiproxy.backends import Backend

        result = config.hook.pytest_resilience_backend(config=config)
        if result is None or isinstance(result, Backend):
            return result
        if isinstance(result, str):
            try:
                return parse_backend(result)
            except ValueError:
                raise BackendError(
                    f"pytest_resilience_backend returned {result!r}, which is not auto, "
                    "embedded, spawn or an http://host:port URL; return one of those, a "
                    f"Backend, or None to keep {OPTION_BACKEND}."
                ) from None
        raise BackendError(
            f"pytest_resilience_backend returned {result!r} ({type(result).__name__}); return "
            "a Backend, a choice (auto, embedded, spawn or an http://host:port URL), or None "
            f"to keep {OPTION_BACKEND}."
        )

    return choose


def watch_events(item: pytest.Item, res: Resilience) -> None:
    """Hand ``res``'s events to ``pytest_resilience_event`` implementations, if there are any."""
    hook = item.config.hook.pytest_resilience_event
    if not hook.get_hookimpls():
        return

    def deliver(event: Any) -> None:
        try:
            hook(event=event, item=item)
        except Exception as exc:
            # Runs on the dispatcher thread; the timeline re-raises it in the test's.
            raise ResilienceError(
                f"a pytest_resilience_event implementation raised {exc!r} on {event!r}; fix "
                "it (its traceback is above): events arrive on a plugin thread, so what it "
                "raises fails the test at teardown."
            ) from exc

    res.timeline.subscribe(deliver)
