"""Versioned site and controller configuration."""
