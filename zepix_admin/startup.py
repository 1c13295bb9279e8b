"""What the entry points (manage.py, the ASGI application) do before Django starts."""

import sys

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def skip_unused_drivers() -> None:
    """huey's storage module imports redis and psycopg whichever storage it is given: 0.33 s of
    every command's and web worker's 1.3 s start on this machine. Without REDIS_URL nothing
    uses redis, and without DATABASE_URL nothing uses psycopg: huey is then imported with them
    answered as not installed, and they stay importable for anything that asks later."""
    try:
        used = {"redis": settings.REDIS_URL, "psycopg": settings.DATABASE_URL}
    except ImproperlyConfigured:
        return  # Django says what is wrong when it starts
    unused = [name for name, url in used.items() if not url and name not in sys.modules]
    for name in unused:
        sys.modules[name] = None  # type: ignore[assignment]  # what `import` reads as "not installed"
    try:
        import huey.storage  # noqa: F401
    finally:
        for name in unused:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
