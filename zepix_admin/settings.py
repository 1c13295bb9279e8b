"""Settings for Zepix Admin. Everything comes from the environment, with safe
development defaults; production (DJANGO_DEBUG=0) refuses to start without its secrets."""

import os
import sys
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from plugins_app import registry

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    value = os.environ.get(name, default).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be 0 or 1, not {value!r}")


def envint(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Core. DEBUG is off unless asked for (DJANGO_DEBUG=1, as `make run` does on this machine),
# or under `runserver`: a debug error page shows local variables to whoever sees it.
DEBUG = envbool("DJANGO_DEBUG", "1" if sys.argv[1:2] == ["runserver"] else "0")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is required when DJANGO_DEBUG=0. Generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production-zepix"
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS", "")

# Where things live on disk
DATA_DIR = Path(os.environ.get("ZEPIX_DATA_DIR", BASE_DIR / "data")).resolve()
CONFIG_DIR = Path(os.environ.get("ZEPIX_CONFIG_DIR", BASE_DIR / "config")).resolve()
BACKUP_DIR = DATA_DIR / "backups"
# The data folder's id, made by `setup` (zepix_admin.core.home).
CONSOLE_ID_FILE = DATA_DIR / "console-id"
ARCHIVE_DIR = DATA_DIR / "archived"
(DATA_DIR / "plugins").mkdir(parents=True, exist_ok=True)

# Plugins: one app and one SQLite database each
PLUGIN_IDS = registry.declared_plugins(CONFIG_DIR)

INSTALLED_APPS = [
    "zepix_admin.core.admin_site.ZepixAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "huey.contrib.djhuey",
    "axes",
    "zepix_admin.core",
    "plugins_app",
    "config_app",
    "sync_app",
    "zepix_admin",
] + [f"plugins_app.plugin_apps.{plugin_id}" for plugin_id in PLUGIN_IDS]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything that queries (a bearer token, the session, the user): on PostgreSQL a query
    # on a connection that went silent after the pool checked it (the server hung, a firewall
    # that forgot it) waited for good in the token's look-up, and the answer with it.
    "zepix_admin.core.limits.StatementTimeLimitMiddleware",
    "zepix_admin.core.access.SessionMiddleware",  # Django's, a page read not refused for its session
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "zepix_admin.core.access.BearerTokenMiddleware",
    "zepix_admin.core.access.IdleSessionMiddleware",
    "zepix_admin.core.access.HtmxLoginRedirectMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "zepix_admin.core.access.RoleRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "plugins_app.middleware.PluginsJoinMiddleware",
    "zepix_admin.core.errors.ErrorMiddleware",
    "plugins_app.middleware.PluginDatabaseErrorMiddleware",
    "axes.middleware.AxesMiddleware",
]
# Alerts are never posted to loopback or private addresses unless this allows it (an internal relay).
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = envbool("ZEPIX_WEBHOOK_ALLOW_PRIVATE", "0")
# Addresses that may read /metrics without a token (a Prometheus server). None by default: behind
# a reverse proxy on the same machine every request comes from loopback.
METRICS_ALLOWED_ADDRESSES = envlist("ZEPIX_METRICS_ALLOWED", "")
# Every query of one request shares this deadline (zepix_admin.core.limits): no request can stall the server.
STATEMENT_TIME_LIMIT_SECONDS = 5

ROOT_URLCONF = "zepix_admin.urls"
WSGI_APPLICATION = "zepix_admin.wsgi.application"
ASGI_APPLICATION = "zepix_admin.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "zepix_admin.core.context_processors.navigation",
            ],
        },
    },
]

# Databases: WAL so readers never block the bot's writer; IMMEDIATE so two writers
# queue on the busy timeout instead of failing with "database is locked".
SQLITE_BUSY_TIMEOUT_SECONDS = envint("ZEPIX_SQLITE_BUSY_TIMEOUT", 20)
# A sync copies at most this many trades a transaction of the central SQLite file, letting other
# writers in between (sync_app.sync says why and what it was measured at): lower on a slow disk.
SYNC_TRADES_PER_TRANSACTION = envint("ZEPIX_SYNC_TRADES_PER_TRANSACTION", 200_000)
if SYNC_TRADES_PER_TRANSACTION < 1:
    raise ImproperlyConfigured("ZEPIX_SYNC_TRADES_PER_TRANSACTION must be at least 1")


def sqlite_database(path: Path, engine: str = "zepix_admin.core.sqlite_backend") -> dict:
    return {
        "ENGINE": engine,
        "NAME": path,
        "OPTIONS": {
            "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA foreign_keys=ON",
        },
    }


# The central database: an SQLite file under the data folder, or PostgreSQL
# (DATABASE_URL=postgres://...), which several web nodes and consumers share. Plugin
# databases stay SQLite files whatever the central one is: the bot writes them.
DATABASE_URL = os.environ.get("DATABASE_URL", "")


# The central SQLite file's write-ahead log is copied into the file (a checkpoint) by the sync
# run (sync_app.sync.run_sync: each plugin's pages in a thread while the next plugin syncs, the
# rest at its end), rather than by every commit that finds the log over SQLite's default 1,000
# pages: the run's commits then each waited to copy their own plugin's pages, and wrote the
# pages all the plugins share (the indexes' newest entries, the totals) again for each plugin.
# 1,000 new trades from seed_demo in each of 5 plugins of 200,000: 925-1,032 -> 752-787 ms
# beyond an empty sync (BENCHMARKS.md). Every central connection has the same limit, so that no
# other commit (a page's, a config save's) pays for a run's pages: 64 MB, a limit for when no
# sync runs.
CENTRAL_WAL_AUTOCHECKPOINT_PAGES = 16384


def central_database(url: str) -> dict:
    if not url:
        database = sqlite_database(DATA_DIR / "central.sqlite3")
        database["OPTIONS"]["init_command"] += f";PRAGMA wal_autocheckpoint={CENTRAL_WAL_AUTOCHECKPOINT_PAGES}"
        return database
    import dj_database_url

    try:
        database = dict(dj_database_url.parse(url))
    except ValueError as error:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {error}") from None
    if database["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_URL names a PostgreSQL database (postgres://...), or is not set.")
    # Django's connection pool (psycopg-pool): a request borrows a connection instead of opening one.
    # A PostgreSQL that is down answers within 3 s (pages say so) instead of holding requests.
    # A connection is checked when it is borrowed: after PostgreSQL restarts, the pool's dead
    # connections are replaced instead of failing the next requests.
    from zepix_admin.core.cutoff import check_answering

    database["OPTIONS"] = {
        "pool": {
            "min_size": 1,
            "max_size": envint("ZEPIX_DATABASE_POOL_SIZE", 10),
            "timeout": 3,
            "check": check_answering,  # psycopg-pool's check, cut off when the server does not answer
            # psycopg-pool retries a failed connection after 1, 2, 4, 8... s until this many seconds
            # have passed, then leaves it to the next request (which tries at once): with its
            # default (300 s), pages stayed down 13 s after an 18 s outage had ended, and for as
            # long as the outage had lasted after a longer one.
            "reconnect_timeout": 2,
        },
        "connect_timeout": 3,
        # A connection whose peer vanished without a reset (its host gone, a firewall or NAT that
        # forgot it) is given up by the kernel's own retries after about 15 minutes: TCP keepalives
        # notice an idle one (a config hub's LISTEN) within about 30 s, and tcp_user_timeout one
        # whose data goes unacknowledged for 15 s (a command's query). Not tested here: nothing on
        # this machine can drop a loopback connection's packets. A server whose kernel still
        # acknowledges but which answers nothing is cut off by zepix_admin.core.cutoff instead.
        "keepalives": 1,
        "keepalives_idle": 15,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 15_000,
    }
    return database


DATABASES = {"default": central_database(DATABASE_URL)}
for _plugin_id in PLUGIN_IDS:
    # A backend that never creates a missing file and never connects at start-up: see its docstring.
    DATABASES[registry.alias_for(_plugin_id)] = sqlite_database(
        registry.database_path(DATA_DIR, _plugin_id), engine="plugins_app.db_backend"
    )
DATABASE_ROUTERS = ["plugins_app.router.PluginDatabaseRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Every plugin database has the same table, index and constraint names on purpose (one
# schema, many files): plugins_app.checks drops Django's reports of those clashes, and only those.

# Auth. Logins are locked out after repeated failures, per account and per address
# (django-axes: 5 failures, 15 minutes); a session ends after ZEPIX_SESSION_IDLE_MINUTES
# without a request from the operator (the pages' own polling does not count), and after
# 12 hours in any case.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
SESSION_IDLE_SECONDS = envint("ZEPIX_SESSION_IDLE_MINUTES", 480) * 60
SESSION_COOKIE_AGE = 12 * 3600
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "/login/?logged_out=1"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# Internationalization
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files: whitenoise with compressed, hashed names
STATIC_URL = "static/"
# Where `setup` collects them (a proxy may serve them from there). Installs of one checkout may
# share it: the tests' do, instead of compressing the same 500 files for each install.
STATIC_ROOT = Path(os.environ.get("ZEPIX_STATIC_ROOT", DATA_DIR / "staticfiles")).resolve()
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # `setup` runs collectstatic, so even a development run serves the hashed, compressed files.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Security (production)
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("DJANGO_SECURE_SSL_REDIRECT", "1")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = envint("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# No inline script runs but the one the config page marks with the request's nonce; styles
# may be inline (htmx injects its indicator style).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# Huey: its own SQLite file, never the central database
# The task queue: a SQLite file under the data folder, or Redis (REDIS_URL=redis://...), which
# several consumers share (the scheduler tick still runs once a minute). They run where the
# console's folders are: zepix_admin.core.home.
REDIS_URL = os.environ.get("REDIS_URL", "")


def queue_name() -> str:
    """On Redis, the queue (and the tick's lock) named after the console's data folder: two
    consoles given one Redis database (a staging and a production one, on database 0 both) ran
    each other's jobs, each its own consumers' syncs and backups of its own folders."""
    try:
        return f"zepix-{CONSOLE_ID_FILE.read_text().strip()}" if REDIS_URL else "zepix"
    except FileNotFoundError:
        return "zepix"  # before the first `setup`, which makes the id


HUEY = {
    "huey_class": f"zepix_admin.core.queue.{'RedisQueue' if REDIS_URL else 'SqliteQueue'}",
    "name": queue_name(),
    **({"url": REDIS_URL} if REDIS_URL else {"filename": str(DATA_DIR / "huey.sqlite3")}),
    "immediate": envbool("ZEPIX_HUEY_IMMEDIATE", "0"),
    # An idle worker looks at the SQLite queue less and less often, up to every max_delay seconds
    # (Huey's default 10): a "Sync now" clicked on a quiet console waited 2.7 and 4.3 s to start
    # in 2 of 9 tries. A look is one small transaction on the queue's own file. (On Redis a worker
    # waits on the queue itself.)
    "consumer": {"workers": 2, "worker_type": "thread", "max_delay": 1.0},
}

# What commands take when their option is not given. The environment is read here only
# (tests/test_guard_rails.py): every variable is in one place, and in the README's table.
SERVE_HOST = os.environ.get("HOST", "127.0.0.1")
SERVE_PORT = envint("PORT", 8000)
SERVE_WORKERS = envint("WEB_CONCURRENCY", 1)
CONSOLE_URL = os.environ.get("ZEPIX_URL", f"http://127.0.0.1:{SERVE_PORT}")  # watch_config
CONSOLE_TOKEN = os.environ.get("ZEPIX_TOKEN", "")  # watch_config
SUPERUSER_USERNAME = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")  # setup, on a new install
SUPERUSER_PASSWORD = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
# The config watcher waits this long after a file's last change before reading it.
CONFIG_DEBOUNCE_SECONDS = envint("ZEPIX_CONFIG_DEBOUNCE_MS", 200) / 1000
# The largest file a bot host may ship whole (sync_app.shipping), decompressed.
MAX_SNAPSHOT_BYTES = envint("ZEPIX_MAX_SNAPSHOT_MB", 16384) << 20

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"zepix": {"handlers": ["console"], "level": os.environ.get("ZEPIX_LOG_LEVEL", "WARNING")}},
}

# One migrations package serves every plugin app: the schema is defined once.
MIGRATION_MODULES = {registry.alias_for(plugin_id): "plugins_app.plugin_migrations" for plugin_id in PLUGIN_IDS}
