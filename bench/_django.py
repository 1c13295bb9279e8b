"""Start Django for a benchmark in a throw-away data and config folder (or ones given)."""

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def declare_plugins(plugin_ids: list[str]) -> None:
    """Each plugin's config document, written before Django starts so each gets its own database."""
    config_dir = Path(os.environ.setdefault("ZEPIX_CONFIG_DIR", tempfile.mkdtemp(prefix="zepix-bench-config-")))
    (config_dir / "plugins").mkdir(parents=True, exist_ok=True)
    for plugin_id in plugin_ids:
        (config_dir / "plugins" / f"{plugin_id}.json").write_text('{"enabled": true, "max_lot_size": 1}')


@contextmanager
def central_on_postgresql():
    """The central database on a throw-away PostgreSQL cluster (the tests' helper), as
    DATABASE_URL for start(); the cluster is removed afterwards."""
    sys.path.insert(0, str(ROOT))
    from tests.helpers import Postgres

    cluster = Postgres()
    try:
        cluster.sql("CREATE DATABASE zepix_bench")
        os.environ["DATABASE_URL"] = cluster.url("zepix_bench")
        yield
    finally:
        cluster.close()


def start(prefix: str = "zepix-bench-") -> Path:
    os.environ.setdefault("ZEPIX_DATA_DIR", tempfile.mkdtemp(prefix=prefix + "data-"))
    os.environ.setdefault("ZEPIX_CONFIG_DIR", tempfile.mkdtemp(prefix=prefix + "config-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zepix_admin.settings")
    os.environ.setdefault("DJANGO_SUPERUSER_PASSWORD", "bench-password-123")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    with open(os.devnull, "w") as quiet:
        call_command("setup", "--no-demo", verbosity=0, stdout=quiet)
    return Path(os.environ["ZEPIX_DATA_DIR"])


def summary(samples_ms: list[float]) -> str:
    ordered = sorted(samples_ms)
    median = ordered[len(ordered) // 2]
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {median:7.1f} ms  p95 {p95:7.1f} ms  (n={len(ordered)})"


def median(samples: list[float]) -> float:
    return sorted(samples)[len(samples) // 2]
