"""Helpers for the integration tests: throwaway PostgreSQL clusters, Azurite, signed Data Collector
requests and Event Grid events built the way the Functions host builds them."""
