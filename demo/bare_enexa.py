"""A live Enexa (gunicorn) on a fresh database holding a few sites, a staff user and (on request)
a controller with an API key per site: enough for ingest tests and benches that do not need the
whole demo data."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from amperio.procs import free_port
from demo.enexa import (
    access_token,
    fill_database,
    live_settings,
    run_manage,
    serve_enexa,
    unthrottled_env,
)

SEED = """
from django.contrib.auth import get_user_model
from enexa.registry.models import Site
for code in {codes!r}:
    Site.objects.get_or_create(
        code=code, defaults={{"name": code, "grid_connection_limit_kw": 400}}
    )
get_user_model().objects.create_user("bench", password={password!r}, is_staff=True)
if {controllers!r}:
    import json
    from enexa.provisioning.services import issue_api_key
    from enexa.registry.models import Controller
    keys = {{}}
    for n, code in enumerate({codes!r}):
        controller = Controller.objects.create(
            code=f"CTRL{{n + 1:03d}}", serial=f"BENCH-{{n + 1}}", site=Site.objects.get(code=code),
            state="active",
        )
        keys[code] = issue_api_key(controller)[1]
    print("KEYS" + json.dumps(keys))
"""


class BareEnexa:
    """Migrate, seed sites and a staff user, serve with gunicorn; `stop()` in `finally`."""

    def __init__(
        self,
        database_url: str,
        log_dir: Path,
        *,
        sites: tuple[str, ...] = ("SITE001",),
        workers: int = 2,
        threads: int = 4,
        controllers: bool = False,
        extra_env: dict[str, str] | None = None,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = "bench-" + uuid.uuid4().hex
        self.env = {
            "DJANGO_SETTINGS_MODULE": live_settings(),
            "DEBUG": "0",
            "DATABASE_URL": database_url,
            "ENEXA_VAR_DIR": str(log_dir / "enexa-var"),
            "ENEXA_LOG_LEVEL": "WARNING",
            **unthrottled_env(),
            **(extra_env or {}),
        }
        fill_database(database_url, "migrated")
        seed = SEED.format(codes=sites, password=self.password, controllers=controllers)
        out = run_manage("shell", "-c", seed, env=self.env)
        # One active controller per site with an API key issued by the real service.
        self.api_keys: dict[str, str] = {}
        for line in out.splitlines():
            if line.startswith("KEYS"):
                self.api_keys = json.loads(line[4:])
        self.proc = serve_enexa(
            self.port,
            log_dir,
            {**self.env, "GUNICORN_CMD_ARGS": "--log-level warning"},
            workers=workers,
            threads=threads,
        )

    def token(self) -> str:
        return access_token(self.url, "bench", self.password)

    def stop(self) -> None:
        self.proc.stop()
