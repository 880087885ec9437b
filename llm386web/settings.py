"""Django settings for llm386web: a local, single-user trace browser over the llm386 store.

Secure by default: DEBUG off, loopback hosts only, every page behind a login, a strict
Content-Security-Policy. Environment knobs: LLM386_HOME (state folder, default <repo>/var),
LLM386_STORE (store path), LLM386_CONFIG (llm386.toml), LLM386_DEBUG=1, DJANGO_SECRET_KEY,
LLM386_ALLOWED_HOSTS (comma-separated, added to the loopback names).
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

from .home import REPO_DIR, home_dir, read_or_create_secret

BASE_DIR = REPO_DIR
LLM386_HOME = home_dir()


def _secret_key() -> str:
    from_env = os.environ.get("DJANGO_SECRET_KEY")
    if from_env:
        return from_env
    path = LLM386_HOME / "secret_key"
    try:
        return read_or_create_secret(path, nbytes=48)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"cannot read or create the secret key file {path}: {exc}. Make LLM386_HOME "
            "writable, point LLM386_HOME at a writable folder, or set DJANGO_SECRET_KEY."
        ) from None


SECRET_KEY = _secret_key()
DEBUG = os.environ.get("LLM386_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"] + [
    h.strip() for h in os.environ.get("LLM386_ALLOWED_HOSTS", "").split(",") if h.strip()
]

# The app comes first so its `runserver` (static files served without DEBUG) wins.
INSTALLED_APPS = [
    "llm386web.apps.Llm386WebConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "llm386web.middleware.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "llm386web.middleware.RuntimeErrorsMiddleware",
]

ROOT_URLCONF = "llm386web.urls"
WSGI_APPLICATION = "llm386web.wsgi.application"

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
            ],
            "builtins": [
                "django_htmx.templatetags.django_htmx",
                "template_partials.templatetags.partials",
                "llm386web.templatetags.llm386",
            ],
        },
    }
]

# SQLite holds auth and sessions only; traces live in the runtime's LMDB store.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": LLM386_HOME / "web.sqlite3",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Failed log-in counts (llm386web.throttle). Per process, which runserver is.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "sessions"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = LLM386_HOME / "static"

# Security headers. The CSP itself is set by llm386web.middleware.SecurityHeadersMiddleware.
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Strict"
CSRF_FAILURE_VIEW = "llm386web.views.errors.csrf_failure"

# Unhandled exceptions (django.request) go to stderr with their traceback whatever DEBUG is:
# Django's default sends them only to mail_admins when DEBUG is off. Secrets are masked.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "scrubbed": {
            "()": "llm386web.logs.ScrubbingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "scrubbed",
        }
    },
    "loggers": {
        "llm386web": {"handlers": ["console"], "level": "INFO"},
        # Not propagated: Django's own "django" console handler would print it twice under DEBUG.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}

# The web app's own settings, merged over llm386web.conf.defaults(); see that module.
LLM386: dict[str, object] = {}
