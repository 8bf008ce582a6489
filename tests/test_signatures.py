"""Retell request signatures: our signer and verifier against the official SDK, and the view guard."""

import json
from pathlib import Path

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from retell.lib.webhook_auth import symmetric

from integrations.signatures import (
    InvalidSignature,
    retell_signed,
    sign_retell_body,
    verify_retell_signature,
)

FIXTURES = Path(__file__).parent / "fixtures"
KEY = "test-api-key"
NOW = 1_700_000_000_000
VECTOR_BODY = b'{"event":"call_ended"}'
VECTOR_SIGNATURE = "v=1700000000000,d=07024cabe7dd8f6d1c6e4a8324ca92c812e6ad4a7ee506c04f7e462e3321823e"


def fixture_bytes(name):
    return (FIXTURES / name).read_bytes()


def sdk_sign(raw_body, key=KEY, timestamp_ms=NOW):
    """What Retell would send: the official SDK signs the body as text."""
    return symmetric["sign"](raw_body.decode("utf-8"), key, timestamp_ms)


def assert_rejected(code, raw_body, header, **kwargs):
    kwargs.setdefault("api_key", KEY)
    kwargs.setdefault("now_ms", NOW)
    with pytest.raises(InvalidSignature) as excinfo:
        verify_retell_signature(raw_body, header, **kwargs)
    assert excinfo.value.code == code
    return excinfo.value


# --- the published test vector ----------------------------------------------------------------


def test_published_vector_signs():
    assert sign_retell_body(VECTOR_BODY, KEY, 1_700_000_000_000) == VECTOR_SIGNATURE


def test_published_vector_verifies():
    verify_retell_signature(VECTOR_BODY, VECTOR_SIGNATURE, api_key=KEY, now_ms=NOW)


def test_sdk_agrees_with_the_published_vector():
    assert sdk_sign(VECTOR_BODY) == VECTOR_SIGNATURE


# --- interoperability with the official SDK ---------------------------------------------------

NON_ASCII_BODY = json.dumps(
    {"event": "call_ended", "call": {"transcript": "Agent: ¿Señora Müller? Crème brûlée 🦷 día 😀"}},
    ensure_ascii=False,
).encode("utf-8")


@pytest.mark.parametrize(
    "raw_body",
    [
        pytest.param(VECTOR_BODY, id="vector"),
        pytest.param(NON_ASCII_BODY, id="non-ascii"),
        pytest.param(fixture_bytes("retell_call_ended.json"), id="call-ended-fixture"),
        pytest.param(fixture_bytes("retell_call_ended_50_turns.json"), id="50-turns-fixture"),
        pytest.param(b"", id="empty-body"),  # GET/DELETE custom functions sign the empty string
    ],
)
def test_sdk_signed_requests_verify(raw_body):
    verify_retell_signature(raw_body, sdk_sign(raw_body), api_key=KEY, now_ms=NOW)


@pytest.mark.parametrize(
    "raw_body",
    [VECTOR_BODY, NON_ASCII_BODY, fixture_bytes("retell_call_ended_50_turns.json")],
    ids=["vector", "non-ascii", "50-turns-fixture"],
)
def test_our_signatures_verify_with_the_sdk(raw_body):
    assert sign_retell_body(raw_body, KEY, NOW) == sdk_sign(raw_body)
    header = sign_retell_body(raw_body, KEY, NOW)
    assert symmetric["verify"](raw_body.decode("utf-8"), KEY, header, {"timestamp": NOW}) is True


def test_large_fixture_is_really_large_and_non_ascii():
    raw_body = fixture_bytes("retell_call_ended_50_turns.json")
    assert len(raw_body) > 100_000
    assert any(byte > 127 for byte in raw_body)


def test_sign_defaults_to_now():
    header = sign_retell_body(VECTOR_BODY, KEY)
    verify_retell_signature(VECTOR_BODY, header, api_key=KEY)


# --- rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize("skew_ms", [300_001, -300_001, 3_600_000, -3_600_000])
def test_stale_in_both_directions(skew_ms):
    header = sdk_sign(VECTOR_BODY, timestamp_ms=NOW - skew_ms)
    error = assert_rejected("stale_signature", VECTOR_BODY, header)
    assert ("old" if skew_ms > 0 else "in the future") in error.message


@pytest.mark.parametrize("skew_ms", [300_000, -300_000, 0])
def test_edge_of_the_window_is_accepted(skew_ms):
    header = sdk_sign(VECTOR_BODY, timestamp_ms=NOW - skew_ms)
    verify_retell_signature(VECTOR_BODY, header, api_key=KEY, now_ms=NOW)


def test_tolerance_comes_from_settings(settings):
    settings.RETELL_SIGNATURE_TOLERANCE_MS = 1_000
    header = sdk_sign(VECTOR_BODY, timestamp_ms=NOW - 2_000)
    assert_rejected("stale_signature", VECTOR_BODY, header)
    verify_retell_signature(VECTOR_BODY, header, api_key=KEY, now_ms=NOW, tolerance_ms=5_000)


def test_tampered_body():
    header = sdk_sign(VECTOR_BODY)
    assert_rejected("invalid_signature", b'{"event":"call_started"}', header)


def test_tampered_timestamp():
    header = sdk_sign(VECTOR_BODY).replace("v=1700000000000", "v=1700000000001")
    assert_rejected("invalid_signature", VECTOR_BODY, header)


def test_wrong_key():
    header = sdk_sign(VECTOR_BODY, key="another-key")
    assert_rejected("invalid_signature", VECTOR_BODY, header)


def test_body_that_is_not_utf8_is_invalid():
    assert_rejected("invalid_signature", b'{"event":"\xff"}', VECTOR_SIGNATURE)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing(header):
    assert_rejected("missing_signature", VECTOR_BODY, header)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("d=" + "0" * 64, id="no-v"),
        pytest.param("1700000000000," + "0" * 64, id="no-prefixes"),
        pytest.param("v=17e11,d=" + "0" * 64, id="non-int-v"),
        pytest.param("v=,d=" + "0" * 64, id="empty-v"),
        pytest.param("v=-1700000000000,d=" + "0" * 64, id="negative-v"),
        pytest.param("v=1700000000000,d=" + "g" * 64, id="non-hex-d"),
        pytest.param("v=1700000000000,d=" + "0" * 63, id="short-d"),
        pytest.param("v=1700000000000,d=" + "0" * 65, id="long-d"),
        pytest.param("v=1700000000000", id="no-d"),
        pytest.param("d=" + "0" * 64 + ",v=1700000000000", id="reversed"),
        pytest.param("v=1700000000000,d=" + "0" * 64 + ",x=1", id="trailing"),
        pytest.param("v=" + "9" * 40 + ",d=" + "0" * 64, id="absurd-v"),
        pytest.param("sha256=" + "0" * 64, id="other-scheme"),
    ],
)
def test_malformed(header):
    assert_rejected("malformed_signature", VECTOR_BODY, header)


def test_reserialised_json_does_not_verify():
    """Raw-body hashing matters: json.dumps escapes non-ASCII by default, so a re-encoded body differs."""
    raw_body = fixture_bytes("retell_call_ended.json")
    header = sdk_sign(raw_body)
    verify_retell_signature(raw_body, header, api_key=KEY, now_ms=NOW)

    parsed = json.loads(raw_body)
    ascii_body = json.dumps(parsed).encode("utf-8")
    assert json.loads(ascii_body) == parsed  # same data...
    assert_rejected("invalid_signature", ascii_body, header)  # ...different bytes
    compact_body = json.dumps(parsed, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert_rejected("invalid_signature", compact_body, header)


# --- the view guard ---------------------------------------------------------------------------

SETTINGS_KEY = "key_view_test"


@retell_signed
def echo_view(request):
    return HttpResponse(b"ok:" + request.body, status=200)


@pytest.fixture
def signed_settings(settings):
    settings.RETELL_API_KEY = SETTINGS_KEY
    settings.RETELL_MAX_BODY_BYTES = 1_000_000
    return settings


def post(raw_body, signature=None, **extra):
    if signature is not None:
        extra["HTTP_X_RETELL_SIGNATURE"] = signature
    return RequestFactory().post("/retell/webhook", data=raw_body, content_type="application/json", **extra)


def json_body(response):
    assert response["Content-Type"] == "application/json"
    return json.loads(response.content)


def test_view_passes_a_valid_request_through(signed_settings):
    raw_body = fixture_bytes("retell_call_ended.json")
    response = echo_view(post(raw_body, sdk_sign(raw_body, SETTINGS_KEY, timestamp_ms=None)))
    assert response.status_code == 200
    assert response.content == b"ok:" + raw_body


def test_view_is_csrf_exempt():
    assert getattr(echo_view, "csrf_exempt", False) is True
    assert echo_view.__name__ == "echo_view"


@pytest.mark.parametrize(
    ("make_header", "code"),
    [
        (lambda body: None, "missing_signature"),
        (lambda body: "v=abc,d=123", "malformed_signature"),
        (lambda body: sdk_sign(body, SETTINGS_KEY, timestamp_ms=1_000), "stale_signature"),
        (lambda body: sdk_sign(body, "wrong-key", timestamp_ms=None), "invalid_signature"),
    ],
    ids=["missing", "malformed", "stale", "invalid"],
)
def test_view_answers_401_json(signed_settings, make_header, code):
    response = echo_view(post(VECTOR_BODY, make_header(VECTOR_BODY)))
    assert response.status_code == 401
    body = json_body(response)
    assert body["error"] == code
    assert body["message"]
    assert SETTINGS_KEY not in response.content.decode()


def test_view_answers_413_from_content_length_without_reading(signed_settings):
    signed_settings.RETELL_MAX_BODY_BYTES = 10
    request = post(VECTOR_BODY, sdk_sign(VECTOR_BODY, SETTINGS_KEY, timestamp_ms=None))
    assert int(request.META["CONTENT_LENGTH"]) > 10

    def explode(*args, **kwargs):
        raise AssertionError("the body was read")

    request.read = explode
    request._stream.read = explode
    response = echo_view(request)
    assert response.status_code == 413
    assert json_body(response)["error"] == "payload_too_large"


def test_view_answers_413_when_the_actual_body_is_larger_than_declared(signed_settings):
    signed_settings.RETELL_MAX_BODY_BYTES = 10
    request = post(VECTOR_BODY, sdk_sign(VECTOR_BODY, SETTINGS_KEY, timestamp_ms=None))
    request.META["CONTENT_LENGTH"] = "5"  # a lie; the bound must still hold on what was read
    request._body = VECTOR_BODY
    response = echo_view(request)
    assert response.status_code == 413
    assert json_body(response)["error"] == "payload_too_large"


def test_view_answers_413_when_django_refuses_the_body(signed_settings):
    signed_settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 5
    response = echo_view(post(VECTOR_BODY, sdk_sign(VECTOR_BODY, SETTINGS_KEY, timestamp_ms=None)))
    assert response.status_code == 413


def test_view_accepts_a_body_at_the_limit(signed_settings):
    signed_settings.RETELL_MAX_BODY_BYTES = len(VECTOR_BODY)
    response = echo_view(post(VECTOR_BODY, sdk_sign(VECTOR_BODY, SETTINGS_KEY, timestamp_ms=None)))
    assert response.status_code == 200


def test_view_answers_503_when_the_key_is_unset(settings):
    settings.RETELL_API_KEY = ""
    response = echo_view(post(VECTOR_BODY, VECTOR_SIGNATURE))
    assert response.status_code == 503
    body = json_body(response)
    assert body["error"] == "not_configured"
    assert "RETELL_API_KEY is not set" in body["message"]
