"""RetellClient: the exact requests it sends and how each failure is typed."""

import json
from pathlib import Path

import pytest
import requests
import responses
from responses import matchers

from integrations.errors import NotConfigured, NotFound, PermanentError, RateLimited, RetryableError
from integrations.phones import InvalidPhoneNumber
from integrations.retell import DEFAULT_RETRY_AFTER, RetellClient, start_timestamp_range

FIXTURES = Path(__file__).parent / "fixtures"
BASE = "https://retell.test"
KEY = "key_secret_do_not_leak_123"


def load_fixture(name):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def call_object():
    return load_fixture("retell_call_ended.json")["call"]


@pytest.fixture
def client():
    return RetellClient(api_key=KEY, base_url=BASE + "/", connect_timeout=1.5, read_timeout=7)


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def sent(mocked, index=0):
    return mocked.calls[index].request


def sent_json(mocked, index=0):
    return json.loads(sent(mocked, index).body)


def assert_standard_headers(request):
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"


# --- construction -------------------------------------------------------------------------------


def test_missing_key_is_not_configured(settings):
    settings.RETELL_API_KEY = ""
    with pytest.raises(NotConfigured):
        RetellClient()
    with pytest.raises(NotConfigured):
        RetellClient(api_key="")


def test_defaults_come_from_settings(settings):
    settings.RETELL_API_KEY = "key_from_settings"
    settings.RETELL_BASE_URL = "https://api.retellai.example"
    settings.RETELL_CONNECT_TIMEOUT = 2.5
    settings.RETELL_READ_TIMEOUT = 11.0
    client = RetellClient()
    assert client.base_url == "https://api.retellai.example"
    assert client.timeout == (2.5, 11.0)
    assert "key_from_settings" not in repr(client)


def test_timeouts_are_passed_to_requests(client):
    session = requests.Session()
    seen = {}

    def fake_request(method, url, **kwargs):
        seen.update(kwargs)
        raise requests.ConnectTimeout("nope")

    session.request = fake_request
    client.session = session
    with pytest.raises(RetryableError):
        client.get_call("call_1")
    assert seen["timeout"] == (1.5, 7)


# --- create_phone_call ----------------------------------------------------------------------------


def test_create_phone_call_sends_exact_body(client, mocked):
    mocked.post(
        f"{BASE}/v2/create-phone-call", json=call_object() | {"call_status": "registered"}, status=201
    )
    call = client.create_phone_call(
        from_number="(415) 555-9999",
        to_number="+1 415-555-0123",
        override_agent_id="agent_vip",
        override_agent_version=3,
        dynamic_variables={
            "customer_name": "Zoë Müller",
            "visits": 4,
            "balance": 12.5,
            "vip": True,
            "middle_name": None,
            7: "numeric key",
            "prefs": {"lang": "fr"},
        },
        metadata={"ghl_contact_id": "c_1", "source": "workflow"},
        idempotency_key="outbox-42",
    )
    assert call["call_status"] == "registered"
    request = sent(mocked)
    assert request.url == f"{BASE}/v2/create-phone-call"
    assert_standard_headers(request)
    assert sent_json(mocked) == {
        "from_number": "+14155559999",
        "to_number": "+14155550123",
        "override_agent_id": "agent_vip",
        "override_agent_version": 3,
        "retell_llm_dynamic_variables": {
            "customer_name": "Zoë Müller",
            "visits": "4",
            "balance": "12.5",
            "vip": "True",
            "middle_name": "",
            "7": "numeric key",
            "prefs": '{"lang": "fr"}',
        },
        "metadata": {"ghl_contact_id": "c_1", "source": "workflow"},
        "idempotency_key": "outbox-42",
    }


def test_create_phone_call_omits_unset_fields_and_accepts_200(client, mocked):
    mocked.post(f"{BASE}/v2/create-phone-call", json=call_object(), status=200)
    client.create_phone_call(from_number="+14155559999", to_number="4155550123")
    assert sent_json(mocked) == {"from_number": "+14155559999", "to_number": "+14155550123"}


def test_create_phone_call_rejects_a_bad_number_before_any_http(client, mocked):
    with pytest.raises(InvalidPhoneNumber):
        client.create_phone_call(from_number="+14155559999", to_number="not a phone")
    assert len(mocked.calls) == 0


# --- get_call -------------------------------------------------------------------------------------


def test_get_call(client, mocked):
    mocked.get(f"{BASE}/v2/get-call/call_8f14e45fceea167a5a36dedd4bea2543", json=call_object())
    call = client.get_call("call_8f14e45fceea167a5a36dedd4bea2543")
    assert call["call_id"] == "call_8f14e45fceea167a5a36dedd4bea2543"
    request = sent(mocked)
    assert request.method == "GET"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.body is None


def test_get_call_escapes_the_id(client, mocked):
    mocked.get(f"{BASE}/v2/get-call/a%2F..%2Fb", json=call_object())
    client.get_call("a/../b")
    assert sent(mocked).url == f"{BASE}/v2/get-call/a%2F..%2Fb"


# --- list_calls / iter_calls ----------------------------------------------------------------------


def test_start_timestamp_range():
    assert start_timestamp_range(1, 2) == {"start_timestamp": {"type": "range", "op": "bt", "value": [1, 2]}}


def test_list_calls_sends_exact_body(client, mocked):
    filters = start_timestamp_range(1_700_000_000_000, 1_700_086_400_000)
    mocked.post(
        f"{BASE}/v3/list-calls",
        json={"items": [{"call_id": "c1"}], "has_more": True, "pagination_key": "pk_1"},
    )
    page = client.list_calls(
        filter_criteria=filters, sort_order="ascending", limit=5000, pagination_key="pk_0"
    )
    assert page == {"items": [{"call_id": "c1"}], "has_more": True, "pagination_key": "pk_1"}
    request = sent(mocked)
    assert request.url == f"{BASE}/v3/list-calls"
    assert_standard_headers(request)
    assert sent_json(mocked) == {
        "filter_criteria": {
            "start_timestamp": {"type": "range", "op": "bt", "value": [1_700_000_000_000, 1_700_086_400_000]}
        },
        "sort_order": "ascending",
        "limit": 1000,
        "pagination_key": "pk_0",
    }


def test_list_calls_defaults(client, mocked):
    mocked.post(f"{BASE}/v3/list-calls", json={"items": [], "has_more": False})
    assert client.list_calls() == {"items": [], "has_more": False, "pagination_key": None}
    assert sent_json(mocked) == {"sort_order": "descending", "limit": 1000}


def test_list_calls_without_items_is_permanent(client, mocked):
    mocked.post(f"{BASE}/v3/list-calls", json={"calls": []})
    with pytest.raises(PermanentError):
        client.list_calls()


def test_iter_calls_follows_pagination_keys(client, mocked):
    url = f"{BASE}/v3/list-calls"
    first, second, third = (
        {"items": [{"call_id": "c1"}, {"call_id": "c2"}], "has_more": True, "pagination_key": "pk_A"},
        {"items": [{"call_id": "c3"}], "has_more": True, "pagination_key": "pk_B"},
        {"items": [{"call_id": "c4"}], "has_more": False, "pagination_key": "pk_C"},
    )
    base_body = {"filter_criteria": start_timestamp_range(1, 2), "sort_order": "ascending", "limit": 2}
    mocked.post(url, json=first, match=[matchers.json_params_matcher(base_body)])
    mocked.post(
        url, json=second, match=[matchers.json_params_matcher(base_body | {"pagination_key": "pk_A"})]
    )
    mocked.post(url, json=third, match=[matchers.json_params_matcher(base_body | {"pagination_key": "pk_B"})])

    ids = [
        c["call_id"]
        for c in client.iter_calls(
            filter_criteria=start_timestamp_range(1, 2), sort_order="ascending", limit=2
        )
    ]

    assert ids == ["c1", "c2", "c3", "c4"]
    assert len(mocked.calls) == 3
    assert "pagination_key" not in sent_json(mocked, 0)
    assert sent_json(mocked, 1)["pagination_key"] == "pk_A"
    assert sent_json(mocked, 2)["pagination_key"] == "pk_B"


def test_iter_calls_stops_when_more_is_claimed_without_a_key(client, mocked):
    mocked.post(f"{BASE}/v3/list-calls", json={"items": [{"call_id": "c1"}], "has_more": True})
    assert [c["call_id"] for c in client.iter_calls()] == ["c1"]
    assert len(mocked.calls) == 1


# --- error mapping --------------------------------------------------------------------------------


def test_429_is_retryable_with_retry_after(client, mocked):
    mocked.get(
        f"{BASE}/v2/get-call/c1",
        json={"status": "error", "message": "Too many requests"},
        status=429,
        headers={"Retry-After": "12"},
    )
    with pytest.raises(RateLimited) as excinfo:
        client.get_call("c1")
    error = excinfo.value
    assert isinstance(error, RetryableError)
    assert (error.status, error.retry_after, error.vendor) == (429, 12.0, "Retell")
    assert "Too many requests" in str(error)


def test_429_without_retry_after(client, mocked):
    mocked.get(f"{BASE}/v2/get-call/c1", body="slow down", status=429)
    with pytest.raises(RateLimited) as excinfo:
        client.get_call("c1")
    assert excinfo.value.retry_after == DEFAULT_RETRY_AFTER


def test_429_with_an_http_date_retry_after(client, mocked):
    mocked.get(f"{BASE}/v2/get-call/c1", status=429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    with pytest.raises(RateLimited) as excinfo:
        client.get_call("c1")
    assert excinfo.value.retry_after == 0.0  # a date in the past: retry now


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retryable(client, mocked, status):
    mocked.post(f"{BASE}/v2/create-phone-call", body="<html>Bad Gateway</html>", status=status)
    with pytest.raises(RetryableError) as excinfo:
        client.create_phone_call(from_number="+14155559999", to_number="+14155550123")
    assert excinfo.value.status == status
    assert excinfo.value.retryable is True


def test_404_is_not_found(client, mocked):
    mocked.get(f"{BASE}/v2/get-call/nope", json={"status": "error", "message": "Call not found"}, status=404)
    with pytest.raises(NotFound) as excinfo:
        client.get_call("nope")
    assert excinfo.value.retryable is False
    assert "Call not found" in str(excinfo.value)


def test_400_is_permanent_with_retells_message(client, mocked):
    body = {"status": "error", "message": "from_number is not a number you own"}
    mocked.post(f"{BASE}/v2/create-phone-call", json=body, status=400)
    with pytest.raises(PermanentError) as excinfo:
        client.create_phone_call(from_number="+14155559999", to_number="+14155550123")
    error = excinfo.value
    assert not isinstance(error, NotFound)
    assert error.status == 400
    assert error.message.endswith("from_number is not a number you own")
    assert error.body == body
    assert str(error) == "Retell HTTP 400: POST /v2/create-phone-call: from_number is not a number you own"


@pytest.mark.parametrize("status", [401, 403, 422])
def test_other_4xx_are_permanent(client, mocked, status):
    mocked.get(f"{BASE}/v2/get-call/c1", json={"status": "error", "message": "no"}, status=status)
    with pytest.raises(PermanentError) as excinfo:
        client.get_call("c1")
    assert excinfo.value.status == status


def test_redirects_are_not_followed(client, mocked):
    mocked.get(f"{BASE}/v2/get-call/c1", status=302, headers={"Location": "https://elsewhere.test/steal"})
    with pytest.raises(PermanentError) as excinfo:
        client.get_call("c1")
    assert excinfo.value.status == 302
    assert len(mocked.calls) == 1


def test_non_json_2xx_is_permanent(client, mocked):
    mocked.get(f"{BASE}/v2/get-call/c1", body="<html>captive portal</html>", status=200)
    with pytest.raises(PermanentError) as excinfo:
        client.get_call("c1")
    assert excinfo.value.status == 200


def test_timeout_is_retryable(client, mocked):
    mocked.get(f"{BASE}/v2/get-call/c1", body=requests.ReadTimeout("read timed out"))
    with pytest.raises(RetryableError) as excinfo:
        client.get_call("c1")
    assert excinfo.value.status is None
    assert "timed out" in str(excinfo.value)


def test_connection_error_is_retryable(client, mocked):
    mocked.get(f"{BASE}/v2/get-call/c1", body=requests.ConnectionError("connection refused"))
    with pytest.raises(RetryableError):
        client.get_call("c1")


def test_the_key_never_appears_in_errors(client, mocked):
    echoed = {"status": "error", "message": f"Invalid API key {KEY}"}
    mocked.get(f"{BASE}/v2/get-call/c1", json=echoed, status=401)
    mocked.get(f"{BASE}/v2/get-call/c2", body=f"bad key {KEY}", status=500)
    mocked.get(f"{BASE}/v2/get-call/c3", body=requests.ConnectionError(f"refused {KEY}"))
    for call_id in ("c1", "c2", "c3"):
        with pytest.raises(PermanentError if call_id == "c1" else RetryableError) as excinfo:
            client.get_call(call_id)
        error = excinfo.value
        assert KEY not in str(error)
        assert KEY not in repr(error)
        assert KEY not in json.dumps(error.body)
    assert KEY not in repr(client)


def test_the_key_never_appears_in_logs(client, mocked, caplog):
    caplog.set_level("DEBUG")
    mocked.get(f"{BASE}/v2/get-call/c1", json={"status": "error", "message": "no"}, status=400)
    with pytest.raises(PermanentError):
        client.get_call("c1")
    assert caplog.records  # the request was logged...
    assert KEY not in caplog.text  # ...without the key
