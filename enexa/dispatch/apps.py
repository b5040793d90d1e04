"""Django app configuration of enexa.dispatch."""

from django.apps import AppConfig


class DispatchConfig(AppConfig):
    name = "enexa.dispatch"
    label = "dispatch"
    verbose_name = "Dispatch"

    def ready(self) -> None:
        # Celery reads its configuration on first use, and not thread-safely: it marks itself
        # configured before adding enexa.celery's settings, so a request thread racing another
        # to the first enqueue could take Celery's default broker (amqp://localhost) for the
        # whole process, and every delivery it enqueued was lost. Configure it now, before any
        # request thread runs.
        from enexa.celery import app

        app.conf.broker_write_url  # noqa: B018 - read for its effect: the configuration loads
