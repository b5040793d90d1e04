"""Settings profiles: base (shared), dev, test and production; values come from the environment."""
