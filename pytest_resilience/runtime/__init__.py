"""Process-wide machinery the layers share: the background event loop."""
