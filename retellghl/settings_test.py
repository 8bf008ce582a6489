"""Settings for the test suite: the real settings module with test credentials as environment defaults.

The environment is still read only by `retellghl.settings`; this module just provides defaults so a
bare `pytest` works. CI overrides DATABASE_URL / REDIS_URL to run the same suite on PostgreSQL and Redis.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("RETELL_API_KEY", "key_test_retell_api_key")
os.environ.setdefault("GHL_API_TOKEN", "pit-test-token-0000")
os.environ.setdefault("GHL_LOCATION_ID", "loc_BrightDental1")
os.environ.setdefault("PUBLIC_BASE_URL", "https://retellghl.example.com")
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")

from retellghl.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
