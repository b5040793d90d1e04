"""The command path: command table, setpoint leases, equipment limits, autonomy."""
