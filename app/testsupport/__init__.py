"""Servers and helpers for the tests and benchmarks; never installed on a device."""
