"""Benchmarks: ``make bench`` runs them all and prints their figures (targets in the issues)."""
