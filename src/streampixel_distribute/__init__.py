"""Trigger Streampixel build distribution from CI, one account-wide rate-limit slot at a time."""

__version__ = "0.1.0"
