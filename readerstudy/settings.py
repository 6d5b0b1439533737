"""Settings for the reader-study platform.

Everything that differs between the demo and production comes from environment variables. The defaults are
safe: DEBUG off (the demo and test commands set DEBUG=1), SQLite file, loopback only, immediate tasks. With DEBUG
off, SECRET_KEY and DEID_SALT must be set; with DEBUG on, missing ones are generated once and kept in
``.demo-secrets.json`` (never in the repository).
"""

from pathlib import Path

import dj_database_url

from readerstudy.env import demo_secret, env_bool, env_int, env_list, env_str
from readerstudy.storage_config import FILESYSTEM_STORAGE, STATICFILES_STORAGE, s3_storage

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
DEMO_SECRETS_FILE = Path(env_str("DEMO_SECRETS_FILE", str(BASE_DIR / ".demo-secrets.json")))


def _secret(name: str) -> str:
    value = env_str(name, "")
    if value:
        return value
    if not DEBUG:
        raise RuntimeError(f"{name} must be set when DEBUG is off (DEBUG=1 is for the demo and the tests only)")
    return demo_secret(DEMO_SECRETS_FILE, name)


SECRET_KEY = _secret("SECRET_KEY")
# Secret salt of the de-identification (UID remapping, date shifts): set it in production and never change it.
# Its own secret, never derived from SECRET_KEY: a leaked or rotated session key must not touch pseudonyms.
DEID_SALT = _secret("DEID_SALT")
if DEID_SALT == SECRET_KEY:
    raise RuntimeError("DEID_SALT must differ from SECRET_KEY")
# Error reports (the DEBUG page, mails to admins) hide these settings' values as well as Django's defaults.
DEFAULT_EXCEPTION_REPORTER_FILTER = "readerstudy.security.SecretsReporterFilter"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_tasks",
    "django_tasks_db",
    "axes",
    "readerstudy.core",
    "readerstudy.studies",
    "readerstudy.reading",
    "readerstudy.results",
    "inference",
    "readerstudy.backup",  # top floor: imports studies, reading, inference; nothing imports it
    "readerstudy.operations",  # top floor: study admins' pages over studies, inference, reading
]

MIDDLEWARE = [
    # First: one line per request (route pattern, status, duration; nothing personal), whatever answers it.
    "readerstudy.requestlog.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "readerstudy.security.ContentSecurityPolicyMiddleware",
    # Last, as django-axes requires: turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: counts failures and refuses locked-out logins
    "django.contrib.auth.backends.ModelBackend",
]
# Login protection: 5 failures for one user name from one address lock it for 15 minutes.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_MINUTES", 15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The client address (readerstudy.logins.client_ip): REMOTE_ADDR; X-Forwarded-For only with TRUSTED_PROXY_COUNT
# proxies in front (counted from the right), or else every reader behind the proxy would share one address.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
if TRUSTED_PROXY_COUNT < 0:
    raise ValueError(f"environment variable TRUSTED_PROXY_COUNT={TRUSTED_PROXY_COUNT}: expected 0 or more")
AXES_CLIENT_IP_CALLABLE = "readerstudy.logins.client_ip"
# Axes' log lines would name the user and the address: they say what happened only (attempts stay in the database).
AXES_CLIENT_STR_CALLABLE = "readerstudy.requestlog.axes_client_str"
AXES_VERBOSE = False  # no start-up banner: logs go to stdout, where commands print their own output
# Per address across user names (password spraying): after 20 failures within 5 minutes, that address waits 60 s.
LOGIN_THROTTLE_FAILURES = env_int("LOGIN_THROTTLE_FAILURES", 20)
LOGIN_THROTTLE_WINDOW_SECONDS = env_int("LOGIN_THROTTLE_WINDOW_SECONDS", 300)
LOGIN_THROTTLE_SECONDS = env_int("LOGIN_THROTTLE_SECONDS", 60)

ROOT_URLCONF = "readerstudy.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "readerstudy" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "readerstudy.wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=60,
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The Vite build (frontend/dist) is a static-files folder; its manifest maps entries to hashed names.
FRONTEND_DIST = BASE_DIR / "frontend" / "dist"
STATICFILES_DIRS = [BASE_DIR / "readerstudy" / "static"] + ([FRONTEND_DIST] if FRONTEND_DIST.is_dir() else [])
VITE_MANIFEST = FRONTEND_DIST / ".vite" / "manifest.json"
WHITENOISE_USE_FINDERS = DEBUG  # serve from the source folders in the demo, from STATIC_ROOT in production
WHITENOISE_MIMETYPES = {".wasm": "application/wasm", ".mjs": "text/javascript"}
# Files under assets/ carry a content hash in their names: cache them for a year.
WHITENOISE_IMMUTABLE_FILE_TEST = r"^.+[.-][0-9a-zA-Z_-]{8,12}\..+$"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))
# Series, predictions and exports go through Django's storage API: a local folder (MEDIA_ROOT) by default, an
# S3-protocol object store in production (STORAGE_BACKEND=s3), which every machine reaches by the same names.
STORAGE_BACKEND = env_str("STORAGE_BACKEND", "filesystem")
if STORAGE_BACKEND == "filesystem":
    _default_storage = FILESYSTEM_STORAGE
elif STORAGE_BACKEND == "s3":
    _default_storage = s3_storage(
        bucket=env_str("S3_BUCKET", ""),
        endpoint_url=env_str("S3_ENDPOINT_URL", ""),
        region=env_str("S3_REGION", ""),
        prefix=env_str("S3_PREFIX", ""),
        access_key=env_str("S3_ACCESS_KEY_ID", ""),
        secret_key=env_str("S3_SECRET_ACCESS_KEY", ""),
    )
else:
    raise ValueError(f"environment variable STORAGE_BACKEND={STORAGE_BACKEND!r}: expected filesystem or s3")
STORAGES = {"default": _default_storage, "staticfiles": STATICFILES_STORAGE}
# DL models: the demo's small phantom-trained weights ship in fixtures/models; production points elsewhere.
INFERENCE_MODELS_DIR = Path(env_str("INFERENCE_MODELS_DIR", str(BASE_DIR / "fixtures" / "models")))
# Case import by UID (manifest columns study_instance_uid + series_instance_uid): the PACS's DICOMweb root, e.g.
# http://pacs:8042/dicom-web. Unset: rows naming UIDs are refused. Basic auth or a bearer token; timeout in seconds.
DICOMWEB_URL = env_str("DICOMWEB_URL", "")
DICOMWEB_USERNAME = env_str("DICOMWEB_USERNAME", "")
DICOMWEB_PASSWORD = env_str("DICOMWEB_PASSWORD", "")
DICOMWEB_TOKEN = env_str("DICOMWEB_TOKEN", "")
DICOMWEB_TIMEOUT = env_int("DICOMWEB_TIMEOUT", 30)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, size- and depth-limited: no endpoint takes forms or uploads.
    "DEFAULT_PARSER_CLASSES": ["readerstudy.parsers.BoundedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "readerstudy reading API",
    "DESCRIPTION": "Worklist, sessions, items, images, DL overlays and reads for MRMC reader studies.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}

# Background work goes through the tasks API: immediate (in the request) in the demo; in production the database
# backend on PostgreSQL, served by ``manage.py task_worker`` processes: ``--queue-name default`` (imports, exports,
# analysis runs) on the web machine, ``--queue-name inference --device cuda`` on GPU machines. A dotted backend path
# is accepted too.
TASK_BACKENDS = {
    "immediate": "django_tasks.backends.immediate.ImmediateBackend",
    "database": "django_tasks_db.DatabaseBackend",
}
TASKS_BACKEND = env_str("TASKS_BACKEND", "immediate")
TASK_QUEUES = ["default", "inference"]  # inference: precompute only, so GPU workers take nothing else
TASKS = {"default": {"BACKEND": TASK_BACKENDS.get(TASKS_BACKEND, TASKS_BACKEND), "QUEUES": TASK_QUEUES}}
# Workers write a heartbeat every WORKER_HEARTBEAT_SECONDS; a task whose worker has been silent for
# WORKER_STALE_SECONDS (killed, machine lost) goes back to the queue and runs again (precompute resumes where its
# stored predictions end).
WORKER_HEARTBEAT_SECONDS = env_int("WORKER_HEARTBEAT_SECONDS", 10)
WORKER_STALE_SECONDS = env_int("WORKER_STALE_SECONDS", 60)
if not 0 < WORKER_HEARTBEAT_SECONDS < WORKER_STALE_SECONDS:
    raise ValueError("WORKER_HEARTBEAT_SECONDS must be above 0 and below WORKER_STALE_SECONDS")
# The device an inference worker runs on (its --device option sets it); empty: the device the run asked for.
INFERENCE_DEVICE = env_str("INFERENCE_DEVICE", "")
if INFERENCE_DEVICE not in ("", "cpu", "cuda"):
    raise ValueError(f"environment variable INFERENCE_DEVICE={INFERENCE_DEVICE!r}: expected cpu or cuda")

# E-mail (the set-password link of a reader account created on the readers page): printed to the console in the
# demo; production sets an SMTP backend (EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS).
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "readerstudy@localhost")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
# The set-password link stays valid this long (Django's password-reset token), in seconds.
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3 * 24 * 3600)

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Transport security outside the demo (HTTPS terminates at the proxy, which sets X-Forwarded-Proto).
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # HSTS preload is the domain owner's decision (it binds every subdomain, for good): opt in with the variable.
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]  # "not preloaded": left off on purpose, see above
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # probes may ask over plain HTTP on the loopback
# Request bodies: reads are small JSON; anything large is refused before it reaches a view.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 1024 * 1024)
# Case import from the browser (/studies/<id>/import/): the upload is streamed to a temporary file on disk, and
# each file is refused once it passes its limit (the request as a whole once its Content-Length passes both).
IMPORT_MAX_ZIP_BYTES = env_int("IMPORT_MAX_ZIP_BYTES", 2 * 1024**3)
IMPORT_MAX_MANIFEST_BYTES = env_int("IMPORT_MAX_MANIFEST_BYTES", 5 * 1024 * 1024)
# Zip bombs: at most this many members, this many bytes uncompressed, and this compression ratio (per member over
# 1 MiB, and overall).
IMPORT_ZIP_MAX_MEMBERS = env_int("IMPORT_ZIP_MAX_MEMBERS", 100_000)
IMPORT_ZIP_MAX_UNCOMPRESSED_BYTES = env_int("IMPORT_ZIP_MAX_UNCOMPRESSED_BYTES", 8 * 1024**3)
IMPORT_ZIP_MAX_RATIO = env_int("IMPORT_ZIP_MAX_RATIO", 200)
# A server-side import area: its direct subfolders (each with a manifest.csv and its series) can be picked on the
# import page. Unset: the option is hidden. Task workers must see the same folder.
IMPORT_ROOT = env_str("IMPORT_ROOT", "") or None


# Logs: one line per record on stdout (journald or the container runtime keeps them), key=value. Request lines come
# from readerstudy.requestlog (route patterns, never paths, users or addresses). LOG_LEVEL: DEBUG ... CRITICAL.
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ValueError(f"environment variable LOG_LEVEL={LOG_LEVEL!r}: expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "time=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"},
    },
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "line"},
    },
    "filters": {"route_not_path": {"()": "readerstudy.requestlog.RouteNotPath"}},
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own records go up to the root's handler, once (its defaults would also print them to stderr).
        "django": {"handlers": [], "level": LOG_LEVEL},
        # SQL with its parameters (names, e-mail addresses) is logged at DEBUG: never, whatever LOG_LEVEL says.
        "django.db.backends": {"level": "INFO"},
        # "Not Found: /path" and "Forbidden (CSRF ...): /path" name the route instead of the path.
        "django.request": {"filters": ["route_not_path"]},
        "django.security.csrf": {"filters": ["route_not_path"]},
    },
}
