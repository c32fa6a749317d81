"""Counting: from tracks to totals, line crossings, dwell times and alerts, and the daily reset."""
