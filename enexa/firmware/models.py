"""Models of enexa.firmware."""
