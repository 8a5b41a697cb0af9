"""Benchmarks that print a ratio against a peer measured in the same run (see bench/README.md)."""
