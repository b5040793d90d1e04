"""Audit log of every API call."""
