"""Alerts: rules evaluated over the fleet's state, one open alert per rule and site."""
