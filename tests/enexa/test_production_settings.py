"""The production profile: refuses development defaults and turns on HTTPS-only settings."""

import json
import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parents[2]
PRINT = (
    "import json, django; from django.conf import settings; django.setup(); print(json.dumps("
    "{k: getattr(settings, k) for k in ['DEBUG', 'SECURE_SSL_REDIRECT', 'SESSION_COOKIE_SECURE',"
    " 'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS',"
    " 'SECURE_PROXY_SSL_HEADER', 'SECURE_CONTENT_TYPE_NOSNIFF']}))"
)


def run_production(env: dict[str, str], code: str = PRINT) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "SECRET_KEY",
            "DATABASE_URL",
            "ALLOWED_HOSTS",
            "DEBUG",
            "REDIS_URL",
            "ENEXA_SECRETS_KEY",
        }
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **clean,
            "PYTHONPATH": str(REPO),
            "DJANGO_SETTINGS_MODULE": "enexa.settings.production",
            **env,
        },
    )


def test_production_refuses_to_start_on_development_defaults():
    result = run_production({})
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr and "DATABASE_URL" in result.stderr
    assert "REDIS_URL" in result.stderr and "ENEXA_SECRETS_KEY" in result.stderr


def test_production_needs_redis_for_rate_limits_unless_every_limit_is_off():
    base = {
        "SECRET_KEY": "x" * 64,
        "DATABASE_URL": "postgres://enexa@127.0.0.1:5432/enexa",
        "ALLOWED_HOSTS": "api.enexa.io",
        "ENEXA_SECRETS_KEY": Fernet.generate_key().decode(),
    }
    refused = run_production(base)
    assert refused.returncode != 0
    assert "REDIS_URL (rate limits are counted per process without it)" in refused.stderr
    all_off = "controller=none,user=none,anon=none,login=none,register=none,auth_failure=none"
    assert run_production({**base, "ENEXA_RATE_LIMITS": all_off}).returncode == 0


def test_production_is_https_only():
    result = run_production(
        {
            "SECRET_KEY": "x" * 64,
            "DATABASE_URL": "postgres://enexa@127.0.0.1:5432/enexa",
            "ALLOWED_HOSTS": "api.enexa.io",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "ENEXA_SECRETS_KEY": Fernet.generate_key().decode(),
        }
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values == {
        "DEBUG": False,
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
    }


def test_processes_starting_together_without_a_secret_key_agree_on_one(tmp_path):
    """gunicorn's workers and the Celery worker each read the development key at start-up: a
    key of their own would make the JWTs one signs invalid at the others."""
    env = {**os.environ, "ENEXA_VAR_DIR": str(tmp_path)}
    env.pop("SECRET_KEY", None)
    code = "from enexa.settings import base; print(base.SECRET_KEY)"
    procs = [
        subprocess.Popen(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    keys = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert len(keys) == 1 and "" not in keys
    assert [p.name for p in tmp_path.iterdir()] == ["dev-secret-key"]


PRODUCTION = {
    "SECRET_KEY": "x" * 64,
    "DATABASE_URL": "postgres://enexa@127.0.0.1:5432/enexa",
    "ALLOWED_HOSTS": "api.enexa.io",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}
SECRETS_KEYS = (
    "import json, django; from django.conf import settings; django.setup(); "
    "print(json.dumps(settings.ENEXA_SECRETS_KEYS))"
)


def test_production_needs_a_secrets_key_of_its_own_and_takes_several_for_rotation():
    refused = run_production(PRODUCTION, SECRETS_KEYS)
    assert refused.returncode != 0
    assert "ENEXA_SECRETS_KEY (one or more Fernet keys, comma-separated)" in refused.stderr
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    started = run_production({**PRODUCTION, "ENEXA_SECRETS_KEY": f"{new}, {old}"}, SECRETS_KEYS)
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout) == [new, old]


def test_a_secrets_key_that_is_not_a_fernet_key_refuses_to_start_without_showing_it():
    good = Fernet.generate_key().decode()
    bad = "not-a-fernet-key-but-a-long-enough-secret-value"
    result = run_production({**PRODUCTION, "ENEXA_SECRETS_KEY": f"{good},{bad}"}, SECRETS_KEYS)
    assert result.returncode != 0
    assert "ENEXA_SECRETS_KEY: key 2 is not a Fernet key" in result.stderr
    assert bad not in result.stderr and good not in result.stderr


def test_without_a_secrets_key_development_derives_one_from_the_secret_key(tmp_path):
    """`make demo` needs no set-up, and processes sharing a SECRET_KEY share the key."""
    code = (
        "import json; from enexa.settings import base; print(json.dumps(base.ENEXA_SECRETS_KEYS))"
    )
    env = {**os.environ, "ENEXA_VAR_DIR": str(tmp_path), "SECRET_KEY": "s" * 50}
    env.pop("ENEXA_SECRETS_KEY", None)

    def keys(**extra: str) -> list[str]:
        run = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", code],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(run.stdout)

    [derived] = keys()
    Fernet(derived)  # a valid key
    assert keys() == [derived]
    assert keys(SECRET_KEY="t" * 50) != [derived]
