"""WSGI entry point of Amperio's API (`gunicorn amperio.api.wsgi:application`)."""

import os

from django.core.wsgi import get_wsgi_application

# Forced, not defaulted: an inherited DJANGO_SETTINGS_MODULE (Enexa's, in a shared shell or
# a test run) must never turn this process into the other deployable.
os.environ["DJANGO_SETTINGS_MODULE"] = "amperio.api.settings"
application = get_wsgi_application()
