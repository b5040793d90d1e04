"""Models of enexa.audit."""
