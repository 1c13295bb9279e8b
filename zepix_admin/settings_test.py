"""Settings for the test suite: the real settings, in a throw-away data and config folder."""

import os
import tempfile

os.environ.setdefault("ZEPIX_DATA_DIR", tempfile.mkdtemp(prefix="zepix-test-data-"))
os.environ.setdefault("ZEPIX_CONFIG_DIR", tempfile.mkdtemp(prefix="zepix-test-config-"))
os.environ.setdefault("DJANGO_DEBUG", "1")  # the development settings; pytest-django turns DEBUG off in tests

from zepix_admin.settings import *  # noqa: F403
from zepix_admin.settings import DATA_DIR, DATABASES, STORAGES

# Test databases are real SQLite files (WAL, several connections), not in-memory ones.
for alias, database in DATABASES.items():
    database["TEST"] = {"NAME": str(DATA_DIR / "test" / f"{alias}.sqlite3")}
(DATA_DIR / "test").mkdir(parents=True, exist_ok=True)

STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
HUEY = {**HUEY, "immediate": True}  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405  (whitenoise warns when it is missing)
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True  # the tests' webhook listens on loopback; one test turns this off
