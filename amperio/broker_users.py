"""RabbitMQ users that confine each site gateway to its own queues (docs/security.md, "The broker").

A site's user may configure, write and read only `amperio.site.<SITE>` and
`amperio.site.<SITE>.watchdog` (each a queue behind a direct exchange of the same name, see
amperio/celery.py): it can run the site's workers and beat, and gets ACCESS_REFUSED on any other
site's queue or exchange and on the default exchange (`amq.default`, which reaches every queue).
A site's user may also publish (write, nothing else) to the exchange `amperio.backend`, where
its gateway sends outcomes and reports; it can neither declare nor consume that queue, so it never
reads another site's outcomes. The backend, which queues commands for every site, may declare and
publish to every site's command queue but not to the watchdog queues, and declares and consumes
`amperio.backend`.
"""

from __future__ import annotations

import re
import secrets
import shlex
import subprocess
from dataclasses import dataclass, field

# Enexa's site code (enexa/registry/models.py): no dots or regex characters in a user's regex.
SITE_ID = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,31}$")
BACKEND_USER = "amperio-backend"
RABBITMQCTL = "rabbitmqctl"
# Every site's command queue (and its exchange), not the `.watchdog` ones.
ANY_SITE = r"^amperio\.site\.[A-Z0-9][A-Z0-9_-]*$"
# Where gateways send outcomes and reports (amperio.backend.reports.BACKEND_QUEUE).
BACKEND_QUEUE = r"^amperio\.backend$"


class BrokerUserError(Exception):
    """A site id that cannot name a user, or rabbitmqctl refusing a step."""


@dataclass(frozen=True)
class BrokerUser:
    """A RabbitMQ user with its permissions in one vhost: regexes on resource names for
    declaring (configure), publishing or binding to (write) and consuming or binding from (read)."""

    name: str
    password: str = field(repr=False)
    configure: str
    write: str
    read: str

    def commands(self, vhost: str) -> list[list[str]]:
        """The rabbitmqctl calls, the password left out (apply() sends it on stdin)."""
        return [
            [RABBITMQCTL, "add_user", self.name],
            [
                RABBITMQCTL, "set_permissions", "-p", vhost, self.name,
                self.configure, self.write, self.read,
            ],
        ]  # fmt: skip


def new_password() -> str:
    return secrets.token_urlsafe(32)


def site_user(site_id: str, password: str | None = None) -> BrokerUser:
    if not SITE_ID.match(site_id):
        raise BrokerUserError(
            f"'{site_id}' is not a site id: 2-32 upper-case letters, digits, '-' or '_'."
        )
    queues = rf"amperio\.site\.{re.escape(site_id)}(\.watchdog)?"
    own = f"^{queues}$"
    # Write on amperio.backend: its outcomes reach the backend through that exchange, which the
    # backend declares (the gateway publishes without declaring, amperio.gateway.publish).
    to_backend = rf"^({queues}|amperio\.backend)$"
    return BrokerUser(f"site-{site_id}", password or new_password(), own, to_backend, own)


def backend_user(password: str | None = None) -> BrokerUser:
    # Read too: Celery declares the queue it publishes to and binds it to its exchange, which
    # needs read on the exchange (same name as the queue), so a command queued before the
    # gateway first connects waits in the queue instead of being dropped as unroutable.
    # amperio.backend too: the backend worker declares and consumes it.
    every = f"{ANY_SITE}|{BACKEND_QUEUE}"
    return BrokerUser(BACKEND_USER, password or new_password(), every, every, every)


def script(user: BrokerUser, vhost: str) -> str:
    """What an operator runs on the broker: the password shown once, here and nowhere else."""
    add, permissions = user.commands(vhost)
    return "\n".join(
        [
            f"printf '%s' {shlex.quote(user.password)} | {shlex.join(add)}",
            shlex.join(permissions),
        ]
    )


def _run(args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - rabbitmqctl with our own arguments
        args, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def apply(user: BrokerUser, vhost: str) -> None:
    """Create the user (or give an existing one the new password) and set its permissions.
    The password goes on stdin, never on a command line other users of the host can read."""
    add, permissions = user.commands(vhost)
    done = _run(add, user.password)
    if done.returncode != 0 and "already exists" in done.stderr + done.stdout:
        done = _run([RABBITMQCTL, "change_password", user.name], user.password)
    for step in (done, _run(permissions)):
        if step.returncode != 0:
            said = (step.stderr or step.stdout).replace(user.password, "***").strip()
            raise BrokerUserError(f"{shlex.join(step.args[:3])} failed: {said}")


def delete(name: str) -> None:
    _run([RABBITMQCTL, "delete_user", name])
