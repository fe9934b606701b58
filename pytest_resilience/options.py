"""Option names and their value checks; imported by the plugin at load, so kept light."""

from __future__ import annotations

import re

from .errors import ConfigurationError

OPTION_BACKEND = "--toxiproxy"
OPTION_BINARY = "--toxiproxy-bin"
OPTION_LISTEN_HOST = "--toxiproxy-listen-host"
OPTION_REACH_HOST = "--toxiproxy-reach-host"
OPTION_SEED = "--resilience-seed"
OPTION_REPORT = "--resilience-report"
OPTION_CLOCK = "--resilience-clock"

INI_BACKEND = "toxiproxy"
INI_BINARY = "toxiproxy_bin"
INI_LISTEN_HOST = "toxiproxy_listen_host"
INI_REACH_HOST = "toxiproxy_reach_host"
INI_SEED = "resilience_seed"
INI_REPORT = "resilience_report"
INI_CLOCK = "resilience_clock"

BACKEND_CHOICES = ("auto", "embedded", "spawn")
URL_ENV = "TOXIPROXY_URL"
CLOCKS = {"real": "", "virtual": "every test on virtual time"}
"""The --resilience-clock choices, with what each means ("" for the usual one)."""


def parse_backend(value: str) -> str:
    """``--toxiproxy``: a backend name or an http URL."""
    value = value.strip()
    if value in BACKEND_CHOICES:
        return value
    if value.startswith("http://"):
        from . import validate

        try:
            validate.http_url(value, OPTION_BACKEND)
            return value
        except ConfigurationError:
            pass  # said below, with the choices
    raise ConfigurationError(
        f"{OPTION_BACKEND}={value!r} is not one of auto, embedded, spawn or an "
        "http://host:port URL; e.g. --toxiproxy=http://127.0.0.1:8474."
    )


def parse_seed(value: str) -> int:
    """``--resilience-seed``: a whole number >= 0."""
    from . import validate

    text = value.strip()
    whole = re.fullmatch(r"-?[0-9]+", text) is not None
    return validate.integer(
        int(text) if whole else value, OPTION_SEED, hint=f"; pass e.g. {OPTION_SEED}=1234"
    )


def parse_clock(value: str) -> str:
    """``--resilience-clock``: real or virtual."""
    from . import validate

    return validate.choice(value.strip(), OPTION_CLOCK, CLOCKS)
