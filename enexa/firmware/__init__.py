"""Firmware catalogue, rollouts and controllers' firmware reports."""
