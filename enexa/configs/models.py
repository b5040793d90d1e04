"""Models of enexa.configs."""
