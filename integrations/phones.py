"""Phone numbers in E.164, the only form we store or send (GHL creates duplicates otherwise)."""

import phonenumbers
from django.conf import settings


class InvalidPhoneNumber(ValueError):
    pass


def to_e164(raw, *, region=None):
    """Return `raw` as E.164 ("+14155550123"), or raise InvalidPhoneNumber.

    Accepts formatted input as GHL sends it ("(415) 555-0142"); numbers without a country code are
    read in `region` (default settings.DEFAULT_PHONE_REGION).
    """
    if raw is None or not str(raw).strip():
        raise InvalidPhoneNumber("phone number is empty")
    text = str(raw).strip()
    try:
        parsed = phonenumbers.parse(text, region or settings.DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"not a phone number: {text!r}") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhoneNumber(f"not a possible phone number: {text!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def to_e164_or_none(raw, *, region=None):
    try:
        return to_e164(raw, region=region)
    except InvalidPhoneNumber:
        return None
