"""The optimization engine: battery schedules from prices, limits and a load forecast."""
