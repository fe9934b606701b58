"""The plugin's exceptions: one root, usage errors also being ValueError/TypeError."""

from __future__ import annotations


class ResilienceError(Exception):
    """Root of every error the plugin raises."""


class ConfigurationError(ResilienceError, ValueError):
    """A bad option, marker argument or fault argument; the message says what to do."""


class BackendError(ResilienceError):
    """Toxiproxy could not be started, reached or understood."""


class UnknownServiceError(ResilienceError, LookupError):
    """A fault names a service the test never created."""
