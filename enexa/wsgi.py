"""WSGI entry point (gunicorn enexa.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "enexa.settings.dev")
application = get_wsgi_application()
