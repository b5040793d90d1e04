"""Django app configuration of enexa.optimizer."""

from django.apps import AppConfig


class OptimizerConfig(AppConfig):
    name = "enexa.optimizer"
    label = "optimizer"
    verbose_name = "Optimizer"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects the re-plan on configuration changes
