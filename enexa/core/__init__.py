"""What every Enexa app uses and no app's HTTP: domain errors, principals, site visibility,
prepared SQL and network helpers. Imports no `enexa.api`, no django.http, no rest_framework."""
