"""Amperio: the site middleware that drives ADS-TEC ChargePost units for the Enexa platform."""
