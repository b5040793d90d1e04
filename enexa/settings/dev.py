"""Development profile: DEBUG on by default, SQLite under var/ unless DATABASE_URL is set."""

from .base import *  # noqa: F403
from .env import env_bool

DEBUG = env_bool("DEBUG", True)
# Webhooks to a receiver on this machine or the local network, as in development.
ENEXA_WEBHOOK_ALLOW_PRIVATE = env_bool("ENEXA_WEBHOOK_ALLOW_PRIVATE", True)
