"""Settings for the guestbook example: a plain Django project whose database replicates through
walship. The only walship-specific line is the database ENGINE; everything else comes from a
Litestream-style .env file (see .env.example)."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def load_env(path):
    """KEY=VALUE lines into os.environ (values already in the environment win)."""
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        os.environ.setdefault(key.strip(), value.strip().strip('"').strip("'"))


load_env(Path(os.environ.get("ENV_FILE", BASE_DIR / ".env")))

# A Litestream-style .env may name the database and replica DB_PATH and REPLICA_URL; walship's
# own names win. (The credentials need nothing: walship reads LITESTREAM_ACCESS_KEY_ID and
# LITESTREAM_SECRET_ACCESS_KEY itself when the AWS_* names are absent.)
for walship_name, litestream_name in (("WALSHIP_DB", "DB_PATH"), ("WALSHIP_REPLICA_URL", "REPLICA_URL")):
    if os.environ.get(litestream_name) and not os.environ.get(walship_name):
        os.environ[walship_name] = os.environ[litestream_name]

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "walship-example-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "notes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "guestbook.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
WSGI_APPLICATION = "guestbook.wsgi.application"

# walship: the stock SQLite backend, with the walship extension loaded before the first
# connection opens. The database replicates to WALSHIP_REPLICA_URL (restored from it when the
# file is missing); WALSHIP_DB names the file. CONN_MAX_AGE=None keeps each worker's connection
# open: with Django's default (a new connection per request) walship would start and stop its
# replication state on every request.
DATABASES = {
    "default": {
        "ENGINE": "guestbook.walship_backend",
        "NAME": os.environ.setdefault("WALSHIP_DB", str(BASE_DIR / "data" / "db.sqlite3")),
        "OPTIONS": {"timeout": 20},
        "CONN_MAX_AGE": None,
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,  # gunicorn's access log (run.sh: --access-logfile -) stays on
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
