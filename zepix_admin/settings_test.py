"""Settings for the test suite: the real settings, in a throw-away data and config folder."""

import atexit
import os
import shutil
import tempfile

# Each pytest-xdist worker (`make test-fast` runs two) gets folders of its own: they inherit
# the environment of the process that started them, folders included.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
for _name, _prefix in (("ZEPIX_DATA_DIR", "zepix-test-data-"), ("ZEPIX_CONFIG_DIR", "zepix-test-config-")):
    if _name not in os.environ:  # made here, so removed here when the run ends
        os.environ[_name] = tempfile.mkdtemp(prefix=_prefix)
        atexit.register(shutil.rmtree, os.environ[_name], ignore_errors=True)
    if _worker:
        os.environ[_name] = os.path.join(os.environ[_name], _worker)
        os.makedirs(os.environ[_name], exist_ok=True)
os.environ.setdefault("DJANGO_DEBUG", "1")  # the development settings; pytest-django turns DEBUG off in tests
# ZEPIX_TEST_POSTGRES=1 (`make test` runs the central-database tests a second time so): the
# central database on a throw-away PostgreSQL cluster, started here once for the whole run
# (the pytest-xdist workers inherit its DATABASE_URL) and stopped when the run ends.
if os.environ.get("ZEPIX_TEST_POSTGRES") == "1" and not os.environ.get("DATABASE_URL"):
    from tests.helpers import Postgres

    _cluster = Postgres()
    atexit.register(_cluster.close)
    os.environ["DATABASE_URL"] = _cluster.url("zepix")

from zepix_admin.settings import *  # noqa: E402, F403 - once the folders above are chosen
from zepix_admin.settings import DATA_DIR, DATABASES, STORAGES  # noqa: E402

# Test databases are real SQLite files (WAL, several connections), not in-memory ones; a
# PostgreSQL central database (DATABASE_URL) gets a test database per worker beside it.
for alias, database in DATABASES.items():
    if database["ENGINE"] == "django.db.backends.postgresql":
        database["ENGINE"] = "tests.postgresql_backend"  # empties its tables between tests faster
        database["TEST"] = {"NAME": f"test_zepix_{_worker or 'main'}"}
        database["OPTIONS"] = {}  # no pool: the test runner opens and drops its database
    else:
        database["TEST"] = {"NAME": str(DATA_DIR / "test" / f"{alias}.sqlite3")}
(DATA_DIR / "test").mkdir(parents=True, exist_ok=True)

STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
HUEY = {**HUEY, "immediate": True}  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405  (whitenoise warns when it is missing)
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True  # the tests' webhook listens on loopback; one test turns this off
