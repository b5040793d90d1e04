"""Run every benchmark module (bench/*_bench.py), or the ones named: `python -m bench ingest`."""
import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                   if m.name.endswith("_bench"))
    wanted = [n for n in names if not argv or any(n.startswith(a) for a in argv)]
    failed = []
    for name in wanted:
        print(f"== {name}", flush=True)
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception as exc:  # noqa: BLE001 - report and go on with the other benches
            print(f"{name} failed: {exc!r}", flush=True)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
