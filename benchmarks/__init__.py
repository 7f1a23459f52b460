"""Benchmarks of wamp-container (not part of the test run): see docs/benchmarks.md."""
