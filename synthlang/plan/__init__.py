"""Resolved programs, fingerprints and cache keys."""
