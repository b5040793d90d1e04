"""WSGI entry point (gunicorn enexa.wsgi): Django's handler, with the gateways' telemetry posts
answered first by enexa.telemetry.fastpath (every other request, and every one that path leaves,
takes Django's middleware chain as usual)."""

import gc
import os

import django
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "enexa.settings.dev")


class EnexaHandler(WSGIHandler):
    def __init__(self) -> None:
        super().__init__()
        from enexa.telemetry import fastpath  # needs the apps loaded

        self.fast_response = fastpath.respond

    def get_response(self, request):
        try:
            response = self.fast_response(request)
        except Exception as exc:  # noqa: BLE001 - answered as the middleware chain would
            response = response_for_exception(request, exc)
        if response is None:
            return super().get_response(request)
        response._resource_closers.append(request.close)
        return response


django.setup(set_prefix=False)
application = EnexaHandler()

# What is loaded by now (modules, settings, URL patterns, caches) lives as long as the process.
# Frozen, the collector's passes no longer walk it: a batch of 1,000 readings builds some 20,000
# containers, and the passes they trigger over a whole Django process cost as much as its JSON
# parsing and schema checks together (about 30 % of a batch's Python time). A request's objects
# are freed by reference counting when it ends; the collector is only there for cycles, so it
# runs after 50,000 new containers rather than 700 (another 7-10 % of a batch's Python time,
# a few MB more at most).
gc.freeze()
gc.set_threshold(50_000, 20, 100)
