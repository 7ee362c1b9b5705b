"""Helpers shared by the tests: plain functions and classes, no fixtures (those live in conftest.py)."""
