"""Webhooks: subscriptions to Enexa's events, signed deliveries (Standard Webhooks) with
retries, a delivery log and a dead letter."""
