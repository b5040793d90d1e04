"""WSGI entry point of Amperio's API (`gunicorn amperio.api.wsgi:application`)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "amperio.api.settings")
application = get_wsgi_application()
