"""The embedded engine against the real Toxiproxy, side by side (``python -m benchmarks.engine_vs_toxiproxy``)."""
