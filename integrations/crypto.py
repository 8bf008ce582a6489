"""Encryption at rest for stored vendor secrets (GHL location tokens).

Fernet (AES-128-CBC + HMAC-SHA256) with FIELD_ENCRYPTION_KEY, or a key derived from SECRET_KEY when
that is unset (documented in .env.example; production should set its own key so that rotating
SECRET_KEY does not make stored tokens unreadable).
"""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import models

PREFIX = "fernet:"


@lru_cache(maxsize=4)
def _fernet(key_material):
    if settings.FIELD_ENCRYPTION_KEY:
        return Fernet(settings.FIELD_ENCRYPTION_KEY.encode())
    derived = hashlib.sha256(b"retellghl-field-encryption:" + key_material.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


def fernet():
    return _fernet(settings.FIELD_ENCRYPTION_KEY or settings.SECRET_KEY)


def encrypt(plaintext):
    return PREFIX + fernet().encrypt(plaintext.encode()).decode()


def decrypt(stored):
    if not stored.startswith(PREFIX):
        raise ValueError("stored secret is not encrypted")
    try:
        return fernet().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise ValueError("stored secret cannot be decrypted with the configured key") from exc


class EncryptedTextField(models.TextField):
    """A text field whose database value is a Fernet token; Python code sees the plaintext."""

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt(value)
