"""Models of enexa.provisioning."""
