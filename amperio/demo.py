"""`make demo`: migrate, load the demo data and run the platform on SQLite."""
import os
import subprocess
import sys

ADDRESS = os.environ.get("ENEXA_DEMO_ADDR", "127.0.0.1:8000")


def main() -> int:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="enexa.settings.dev")
    env.pop("DATABASE_URL", None)  # the demo always runs on SQLite under var/
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], check=True, env=env)
    subprocess.run([*manage, "seed_demo"], check=True, env=env)
    print(f"\nEnexa admin: http://{ADDRESS}/admin/  API docs: http://{ADDRESS}/v1/docs/\n",
          flush=True)
    try:
        return subprocess.call([*manage, "runserver", ADDRESS, "--noreload"], env=env)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
