"""A price service reading through a Redis cache that may fail, on a real redis-server."""
