"""The client-side tap in front of every Toxiproxy proxy."""

from .relay import Tap

__all__ = ["Tap"]
