"""Benchmarks (`make bench`); never installed on a device."""
