"""Benchmarks: one command per benchmark, each appending its section to BENCHMARKS.md."""
