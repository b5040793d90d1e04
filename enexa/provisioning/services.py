"""Provisioning services: enrollment, API keys and the controller lifecycle."""
from enexa.api.principals import ControllerPrincipal


def authenticate_api_key(raw_key: str) -> ControllerPrincipal | None:
    """The principal for a presented API key, or None when it is not valid."""
    return None  # API keys arrive with the provisioning issue.
