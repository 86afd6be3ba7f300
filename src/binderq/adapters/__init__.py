"""Adapters: the only code that speaks to the outside (Redis, Docker, the proxy, git, the
notebook), each turning its vendor's errors into domain errors in one place."""
