"""The link to Enexa: its one client, config sync, status reports, firmware updates."""
