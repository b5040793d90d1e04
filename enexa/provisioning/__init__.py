"""Controller provisioning: enrollment secrets, API keys and the controller lifecycle."""
