"""The Redis client (single, Sentinel, Cluster) and the embedded redis-server."""
