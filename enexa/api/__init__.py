"""API plumbing shared by every app (no models): auth, scoping, errors, pagination, throttles."""
