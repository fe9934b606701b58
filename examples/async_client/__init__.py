"""An async shipping client (httpx or aiohttp) whose retries are judged on the wire."""
