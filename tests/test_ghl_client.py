"""GhlClient: the exact requests it sends to GHL and how it maps GHL's answers to typed errors."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
import responses

from integrations.errors import (
    DuplicateContact,
    NotConfigured,
    NotFound,
    PermanentError,
    RateLimited,
    RetryableError,
)
from integrations.ghl import GhlClient, RateLimit
from integrations.phones import InvalidPhoneNumber

BASE = "https://ghl.test"
TOKEN = "pit-secret-token-4f9a"
LOCATION = "loc_BrightDental1"
CONTACTS = "2021-07-28"
CALENDARS = "2021-04-15"
LA = ZoneInfo("America/Los_Angeles")
FIXTURES = Path(__file__).parent / "fixtures"


def ghl_fixture(name):
    return json.loads((FIXTURES / f"ghl_{name}.json").read_text())


@pytest.fixture
def ghl():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def client():
    return GhlClient(token=TOKEN, location_id=LOCATION, base_url=BASE, connect_timeout=2, read_timeout=9)


def assert_sent(call, method, url, *, version, body=None):
    """The request had exactly this method, URL (path + query), headers, timeout and JSON body."""
    request = call.request
    assert request.method == method
    assert request.url == url
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Version"] == version
    assert request.headers["Accept"] == "application/json"
    assert request.req_kwargs["timeout"] == (2, 9)
    if body is None:
        assert request.body is None
    else:
        assert request.headers["Content-Type"] == "application/json"
        assert json.loads(request.body) == body


# --- Construction --------------------------------------------------------------------------------


def test_missing_token_is_not_configured():
    with pytest.raises(NotConfigured, match="GHL token is not configured for location loc_BrightDental1"):
        GhlClient(token="", location_id=LOCATION)


def test_missing_location_is_not_configured():
    with pytest.raises(NotConfigured):
        GhlClient(token=TOKEN, location_id="")


def test_defaults_come_from_settings(settings, ghl):
    settings.GHL_BASE_URL = "https://ghl-from-settings.test"
    settings.GHL_CONNECT_TIMEOUT = 1.5
    settings.GHL_READ_TIMEOUT = 12.0
    ghl.get("https://ghl-from-settings.test/contacts/c_Dana7Lee01", json=ghl_fixture("contact"))

    GhlClient(token=TOKEN, location_id=LOCATION).get_contact("c_Dana7Lee01")

    assert ghl.calls[0].request.req_kwargs["timeout"] == (1.5, 12.0)


def test_repr_hides_the_token(client):
    assert TOKEN not in repr(client)


def test_sandbox_mode_mounts_the_sandbox_on_the_clients_base_url_only(settings):
    from integrations.sandbox.adapter import SandboxAdapter

    settings.GHL_SANDBOX = True
    sandboxed = GhlClient(token=TOKEN, location_id=LOCATION, base_url=BASE)
    assert isinstance(sandboxed.session.get_adapter(f"{BASE}/contacts/c_1"), SandboxAdapter)
    assert isinstance(
        sandboxed.session.get_adapter("https://api.retellai.com/v2"), requests.adapters.HTTPAdapter
    )

    own_session = requests.Session()  # a session handed in is used as it is
    assert (
        GhlClient(token=TOKEN, location_id=LOCATION, base_url=BASE, session=own_session).session
        is own_session
    )
    assert isinstance(own_session.get_adapter(f"{BASE}/contacts/c_1"), requests.adapters.HTTPAdapter)

    settings.GHL_SANDBOX = False
    live = GhlClient(token=TOKEN, location_id=LOCATION, base_url=BASE)
    assert isinstance(live.session.get_adapter(f"{BASE}/contacts/c_1"), requests.adapters.HTTPAdapter)


# --- Contacts ------------------------------------------------------------------------------------


def test_find_contact_by_phone_normalises_and_encodes_plus(ghl, client):
    ghl.get(f"{BASE}/contacts/search/duplicate", json=ghl_fixture("duplicate_search_found"))

    contact = client.find_contact_by_phone("(415) 555-0123")

    assert contact["id"] == "c_Dana7Lee01"
    url = f"{BASE}/contacts/search/duplicate?locationId={LOCATION}&number=%2B14155550123"
    assert_sent(ghl.calls[0], "GET", url, version=CONTACTS)


def test_find_contact_by_phone_none(ghl, client):
    ghl.get(f"{BASE}/contacts/search/duplicate", json=ghl_fixture("duplicate_search_none"))

    assert client.find_contact_by_phone("+14155550199") is None
    assert ghl.calls[0].request.url.endswith("&number=%2B14155550199")


def test_invalid_phone_is_refused_before_sending(ghl, client):
    with pytest.raises(InvalidPhoneNumber):
        client.find_contact_by_phone("not a phone")
    assert len(ghl.calls) == 0


def test_get_contact(ghl, client):
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", json=ghl_fixture("contact"))

    contact = client.get_contact("c_Dana7Lee01")

    assert contact == ghl_fixture("contact")["contact"]
    assert_sent(ghl.calls[0], "GET", f"{BASE}/contacts/c_Dana7Lee01", version=CONTACTS)


def test_ids_are_one_path_segment(ghl, client):
    ghl.get(f"{BASE}/contacts/..%2Flocations%2Fx", json=ghl_fixture("contact"))

    client.get_contact("../locations/x")

    assert ghl.calls[0].request.url == f"{BASE}/contacts/..%2Flocations%2Fx"


def test_create_contact_adds_location_and_e164_phone(ghl, client):
    ghl.post(f"{BASE}/contacts/", status=201, json=ghl_fixture("contact"))

    contact = client.create_contact(
        {"firstName": "Sam", "phone": "(415) 555-0142", "locationId": "loc_Other"}
    )

    assert contact["id"] == "c_Dana7Lee01"
    assert_sent(
        ghl.calls[0],
        "POST",
        f"{BASE}/contacts/",
        version=CONTACTS,
        body={"firstName": "Sam", "phone": "+14155550142", "locationId": LOCATION},
    )


def test_create_contact_duplicate_carries_existing_id(ghl, client):
    ghl.post(f"{BASE}/contacts/", status=400, json=ghl_fixture("error_duplicate_contact"))

    with pytest.raises(DuplicateContact) as caught:
        client.create_contact({"phone": "+14155550123"})

    error = caught.value
    assert error.contact_id == "c_Dana7Lee01"
    assert error.status == 400
    assert not error.retryable
    assert error.body == ghl_fixture("error_duplicate_contact")
    assert "does not allow duplicated contacts" in str(error)


def test_upsert_contact(ghl, client):
    contact = ghl_fixture("contact")["contact"]
    ghl.post(f"{BASE}/contacts/upsert", json={"new": True, "contact": contact})

    result = client.upsert_contact({"firstName": "Dana", "phone": "415.555.0123"})

    assert result == (contact, True)
    assert_sent(
        ghl.calls[0],
        "POST",
        f"{BASE}/contacts/upsert",
        version=CONTACTS,
        body={"firstName": "Dana", "phone": "+14155550123", "locationId": LOCATION},
    )


def test_upsert_contact_existing(ghl, client):
    ghl.post(f"{BASE}/contacts/upsert", json={"new": False, "contact": ghl_fixture("contact")["contact"]})

    _contact, created = client.upsert_contact({"phone": "+14155550123"})

    assert created is False


def test_update_contact_never_sends_location(ghl, client):
    ghl.put(f"{BASE}/contacts/c_Dana7Lee01", json=ghl_fixture("contact"))

    client.update_contact(
        "c_Dana7Lee01", {"lastName": "Lee", "phone": "(415) 555-0123", "locationId": LOCATION}
    )

    assert_sent(
        ghl.calls[0],
        "PUT",
        f"{BASE}/contacts/c_Dana7Lee01",
        version=CONTACTS,
        body={"lastName": "Lee", "phone": "+14155550123"},
    )


def test_add_tags(ghl, client):
    ghl.post(f"{BASE}/contacts/c_Dana7Lee01/tags", status=201, json={"tags": ["patient", "vip", "ai-called"]})

    tags = client.add_tags("c_Dana7Lee01", ["ai-called"])

    assert tags == ["patient", "vip", "ai-called"]
    url = f"{BASE}/contacts/c_Dana7Lee01/tags"
    assert_sent(ghl.calls[0], "POST", url, version=CONTACTS, body={"tags": ["ai-called"]})


def test_remove_tags_sends_a_json_body_with_delete(ghl, client):
    ghl.delete(f"{BASE}/contacts/c_Dana7Lee01/tags", json={"tags": ["patient"]})

    tags = client.remove_tags("c_Dana7Lee01", ("vip",))

    assert tags == ["patient"]
    url = f"{BASE}/contacts/c_Dana7Lee01/tags"
    assert_sent(ghl.calls[0], "DELETE", url, version=CONTACTS, body={"tags": ["vip"]})


@pytest.mark.parametrize("key", ["events", "appointments"])
def test_get_contact_appointments(ghl, client, key):
    appointment = ghl_fixture("appointment_created")
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01/appointments", json={key: [appointment]})

    assert client.get_contact_appointments("c_Dana7Lee01") == [appointment]
    url = f"{BASE}/contacts/c_Dana7Lee01/appointments"
    assert_sent(ghl.calls[0], "GET", url, version=CONTACTS)


def test_add_to_workflow(ghl, client):
    ghl.post(f"{BASE}/contacts/c_Dana7Lee01/workflow/wf_NewLeadCall", json={"succeded": True})
    ghl.post(f"{BASE}/contacts/c_Dana7Lee01/workflow/wf_NewLeadCall", json={"succeded": True})

    client.add_to_workflow("c_Dana7Lee01", "wf_NewLeadCall")
    client.add_to_workflow(
        "c_Dana7Lee01", "wf_NewLeadCall", event_start_time=datetime(2026, 12, 8, 9, 0, tzinfo=LA)
    )

    url = f"{BASE}/contacts/c_Dana7Lee01/workflow/wf_NewLeadCall"
    assert_sent(ghl.calls[0], "POST", url, version=CONTACTS, body={})
    assert_sent(
        ghl.calls[1], "POST", url, version=CONTACTS, body={"eventStartTime": "2026-12-08T09:00:00-08:00"}
    )


# --- Notes ---------------------------------------------------------------------------------------


def test_add_note(ghl, client):
    ghl.post(f"{BASE}/contacts/c_Dana7Lee01/notes", status=201, json=ghl_fixture("note_created"))

    note = client.add_note("c_Dana7Lee01", "AI call ...")

    assert note == ghl_fixture("note_created")["note"]
    url = f"{BASE}/contacts/c_Dana7Lee01/notes"
    assert_sent(ghl.calls[0], "POST", url, version=CONTACTS, body={"body": "AI call ..."})


def test_update_note(ghl, client):
    ghl.put(f"{BASE}/contacts/c_Dana7Lee01/notes/n_4Qw8Zt", json=ghl_fixture("note_created"))

    note = client.update_note("c_Dana7Lee01", "n_4Qw8Zt", "AI call (updated)", user_id="u_Front1")

    assert note["id"] == "n_4Qw8Zt"
    assert_sent(
        ghl.calls[0],
        "PUT",
        f"{BASE}/contacts/c_Dana7Lee01/notes/n_4Qw8Zt",
        version=CONTACTS,
        body={"body": "AI call (updated)", "userId": "u_Front1"},
    )


def test_list_notes(ghl, client):
    note = ghl_fixture("note_created")["note"]
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01/notes", json={"notes": [note]})

    assert client.list_notes("c_Dana7Lee01") == [note]
    assert_sent(ghl.calls[0], "GET", f"{BASE}/contacts/c_Dana7Lee01/notes", version=CONTACTS)


# --- Calendars -----------------------------------------------------------------------------------


def test_get_free_slots_drops_trace_id_and_sends_epoch_ms(ghl, client):
    ghl.get(f"{BASE}/calendars/cal_Cleanings01/free-slots", json=ghl_fixture("free_slots"))
    start = datetime(2026, 12, 8, tzinfo=LA)

    slots = client.get_free_slots(
        "cal_Cleanings01", start=start, end=start + timedelta(days=2), timezone="America/Los_Angeles"
    )

    assert slots == {
        "2026-12-08": ["2026-12-08T09:00:00-08:00", "2026-12-08T14:00:00-08:00", "2026-12-08T16:00:00-08:00"],
        "2026-12-09": ["2026-12-09T10:30:00-08:00"],
    }
    assert list(slots) == ["2026-12-08", "2026-12-09"]
    url = (
        f"{BASE}/calendars/cal_Cleanings01/free-slots"
        "?startDate=1796716800000&endDate=1796889600000&timezone=America%2FLos_Angeles"
    )
    assert_sent(ghl.calls[0], "GET", url, version=CALENDARS)


def test_get_free_slots_accepts_epoch_ms_and_user(ghl, client):
    ghl.get(f"{BASE}/calendars/cal_Cleanings01/free-slots", json={"traceId": "t"})

    slots = client.get_free_slots(
        "cal_Cleanings01", start=1796716800000, end=1796889600000, timezone="UTC", user_id="u_Hygienist1"
    )

    assert slots == {}
    assert ghl.calls[0].request.url == (
        f"{BASE}/calendars/cal_Cleanings01/free-slots"
        "?startDate=1796716800000&endDate=1796889600000&timezone=UTC&userId=u_Hygienist1"
    )


@pytest.mark.parametrize(
    "start, end",
    [
        (
            datetime(2026, 12, 1, tzinfo=UTC),
            datetime(2026, 12, 1, tzinfo=UTC) + timedelta(days=31, seconds=1),
        ),
        (datetime(2026, 12, 9, tzinfo=UTC), datetime(2026, 12, 8, tzinfo=UTC)),
        (datetime(2026, 12, 8), datetime(2026, 12, 9)),  # naive: which timezone?
    ],
)
def test_get_free_slots_refuses_bad_ranges_before_sending(ghl, client, start, end):
    with pytest.raises(ValueError):
        client.get_free_slots("cal_Cleanings01", start=start, end=end, timezone="UTC")
    assert len(ghl.calls) == 0


def test_get_free_slots_allows_exactly_31_days(ghl, client):
    ghl.get(f"{BASE}/calendars/cal_Cleanings01/free-slots", json={})
    start = datetime(2026, 12, 1, tzinfo=UTC)

    client.get_free_slots("cal_Cleanings01", start=start, end=start + timedelta(days=31), timezone="UTC")


def test_create_appointment_omits_none_fields(ghl, client):
    ghl.post(f"{BASE}/calendars/events/appointments", json=ghl_fixture("appointment_created"))

    appointment = client.create_appointment(
        calendar_id="cal_Cleanings01",
        contact_id="c_Dana7Lee01",
        start_time="2026-12-08T14:00:00-08:00",
        title="Cleaning - Dana Lee",
        assigned_user_id="u_Hygienist1",
    )

    assert appointment == ghl_fixture("appointment_created")
    assert_sent(
        ghl.calls[0],
        "POST",
        f"{BASE}/calendars/events/appointments",
        version=CALENDARS,
        body={
            "calendarId": "cal_Cleanings01",
            "locationId": LOCATION,
            "contactId": "c_Dana7Lee01",
            "startTime": "2026-12-08T14:00:00-08:00",
            "title": "Cleaning - Dana Lee",
            "assignedUserId": "u_Hygienist1",
        },
    )


def test_create_appointment_all_fields(ghl, client):
    ghl.post(f"{BASE}/calendars/events/appointments", json=ghl_fixture("appointment_created"))

    client.create_appointment(
        calendar_id="cal_Cleanings01",
        contact_id="c_Dana7Lee01",
        start_time=datetime(2026, 12, 8, 14, 0, tzinfo=LA),
        end_time="2026-12-08T15:00:00-08:00",
        title="Cleaning",
        appointment_status="confirmed",
        assigned_user_id="u_Hygienist1",
        to_notify=False,
    )

    assert json.loads(ghl.calls[0].request.body) == {
        "calendarId": "cal_Cleanings01",
        "locationId": LOCATION,
        "contactId": "c_Dana7Lee01",
        "startTime": "2026-12-08T14:00:00-08:00",
        "endTime": "2026-12-08T15:00:00-08:00",
        "title": "Cleaning",
        "appointmentStatus": "confirmed",
        "assignedUserId": "u_Hygienist1",
        "toNotify": False,
    }


def test_update_appointment(ghl, client):
    ghl.put(f"{BASE}/calendars/events/appointments/a_7Hk2mQ", json=ghl_fixture("appointment_created"))

    appointment = client.update_appointment("a_7Hk2mQ", {"startTime": "2026-12-08T16:00:00-08:00"})

    assert appointment["id"] == "a_7Hk2mQ"
    assert_sent(
        ghl.calls[0],
        "PUT",
        f"{BASE}/calendars/events/appointments/a_7Hk2mQ",
        version=CALENDARS,
        body={"startTime": "2026-12-08T16:00:00-08:00"},
    )


def test_cancel_appointment(ghl, client):
    cancelled = ghl_fixture("appointment_created") | {"appointmentStatus": "cancelled"}
    ghl.put(f"{BASE}/calendars/events/appointments/a_7Hk2mQ", json=cancelled)

    assert client.cancel_appointment("a_7Hk2mQ")["appointmentStatus"] == "cancelled"
    assert_sent(
        ghl.calls[0],
        "PUT",
        f"{BASE}/calendars/events/appointments/a_7Hk2mQ",
        version=CALENDARS,
        body={"appointmentStatus": "cancelled"},
    )


# --- Opportunities -------------------------------------------------------------------------------


def test_upsert_opportunity(ghl, client):
    opportunity = {"id": "o_1", "name": "Whitening", "status": "open"}
    ghl.post(f"{BASE}/opportunities/upsert", json={"new": True, "opportunity": opportunity})

    result = client.upsert_opportunity(
        pipeline_id="p_Leads", contact_id="c_Dana7Lee01", name="Whitening", pipeline_stage_id="s_Booked"
    )

    assert result == opportunity
    assert_sent(
        ghl.calls[0],
        "POST",
        f"{BASE}/opportunities/upsert",
        version=CONTACTS,
        body={
            "pipelineId": "p_Leads",
            "locationId": LOCATION,
            "contactId": "c_Dana7Lee01",
            "name": "Whitening",
            "status": "open",
            "pipelineStageId": "s_Booked",
        },
    )


# --- Errors --------------------------------------------------------------------------------------


def test_429_with_retry_after(ghl, client):
    ghl.get(
        f"{BASE}/contacts/c_Dana7Lee01",
        status=429,
        json={"statusCode": 429, "message": "Too many requests"},
        headers={
            "Retry-After": "7",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Interval-Milliseconds": "10000",
        },
    )

    with pytest.raises(RateLimited) as caught:
        client.get_contact("c_Dana7Lee01")

    assert caught.value.retryable
    assert caught.value.status == 429
    assert caught.value.retry_after == 7.0


def test_429_falls_back_to_the_burst_interval(ghl, client):
    ghl.get(
        f"{BASE}/contacts/c_Dana7Lee01",
        status=429,
        body="Too Many Requests",
        headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Interval-Milliseconds": "4000"},
    )

    with pytest.raises(RateLimited) as caught:
        client.get_contact("c_Dana7Lee01")

    assert caught.value.retry_after == 4.0
    assert caught.value.body == "Too Many Requests"


def test_429_without_headers_uses_a_default(ghl, client):
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", status=429)

    with pytest.raises(RateLimited) as caught:
        client.get_contact("c_Dana7Lee01")

    assert caught.value.retry_after == 10.0


def test_500_is_retryable(ghl, client):
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", status=502, json={"statusCode": 502, "message": "Bad Gateway"})

    with pytest.raises(RetryableError) as caught:
        client.get_contact("c_Dana7Lee01")

    assert not isinstance(caught.value, RateLimited)
    assert caught.value.status == 502
    assert caught.value.body == {"statusCode": 502, "message": "Bad Gateway"}


@pytest.mark.parametrize(
    "exception",
    [
        requests.exceptions.ConnectTimeout(),
        requests.exceptions.ReadTimeout(),
        requests.exceptions.ConnectionError("Connection refused"),
    ],
)
def test_network_failures_are_retryable(ghl, client, exception):
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", body=exception)

    with pytest.raises(RetryableError) as caught:
        client.get_contact("c_Dana7Lee01")

    assert caught.value.status is None
    assert caught.value.retryable


def test_404_is_not_found(ghl, client):
    ghl.get(f"{BASE}/contacts/c_Gone", status=404, json={"statusCode": 404, "message": "Contact not found"})

    with pytest.raises(NotFound, match="Contact not found"):
        client.get_contact("c_Gone")


def test_422_list_message_is_joined(ghl, client):
    body = ghl_fixture("error_422") | {
        "message": ["property locationId should not exist", "phone must be a string"]
    }
    ghl.put(f"{BASE}/contacts/c_Dana7Lee01", status=422, json=body)

    with pytest.raises(PermanentError) as caught:
        client.update_contact("c_Dana7Lee01", {"firstName": "Dana"})

    assert caught.value.status == 422
    assert not caught.value.retryable
    assert caught.value.message.endswith("property locationId should not exist; phone must be a string")


def test_401_is_permanent(ghl, client):
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", status=401, json={"statusCode": 401, "message": "Invalid JWT"})

    with pytest.raises(PermanentError, match="Invalid JWT") as caught:
        client.get_contact("c_Dana7Lee01")

    assert type(caught.value) is PermanentError


def test_malformed_json_on_200_is_permanent(ghl, client):
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", body="<html>gateway</html>", content_type="text/html")

    with pytest.raises(PermanentError) as caught:
        client.get_contact("c_Dana7Lee01")

    assert caught.value.status == 200
    assert caught.value.body == "<html>gateway</html>"


def test_redirect_is_not_followed(ghl, client):
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", status=302, headers={"Location": "https://elsewhere.test/"})

    with pytest.raises(PermanentError) as caught:
        client.get_contact("c_Dana7Lee01")

    assert caught.value.status == 302


@pytest.mark.parametrize(
    "kwargs",
    [
        {"status": 401, "json": {"statusCode": 401, "message": f"bad token Bearer {TOKEN}"}},
        {"status": 429},
        {"status": 500, "body": f"upstream said {TOKEN}"},
        {"body": requests.exceptions.ConnectionError(f"refused with {TOKEN}")},
    ],
)
def test_token_never_appears_in_errors(ghl, client, kwargs):
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", **kwargs)

    with pytest.raises(Exception) as caught:
        client.get_contact("c_Dana7Lee01")

    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)


# --- Rate limits ---------------------------------------------------------------------------------


def test_rate_limit_headers_are_recorded(ghl, client):
    headers = {
        "X-RateLimit-Remaining": "87",
        "X-RateLimit-Max": "100",
        "X-RateLimit-Interval-Milliseconds": "10000",
        "X-RateLimit-Daily-Remaining": "199842",
    }
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", json=ghl_fixture("contact"), headers=headers)
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", json=ghl_fixture("contact"))

    assert client.rate_limit == RateLimit()
    client.get_contact("c_Dana7Lee01")
    assert client.rate_limit == RateLimit(remaining=87, max=100, interval_ms=10000, daily_remaining=199842)
    client.get_contact("c_Dana7Lee01")
    assert client.rate_limit == RateLimit()


class FakeTime:
    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


SPENT = {"X-RateLimit-Remaining": "0", "X-RateLimit-Max": "100", "X-RateLimit-Interval-Milliseconds": "10000"}


def test_throttle_waits_out_a_spent_burst_window(ghl):
    fake = FakeTime()
    client = GhlClient(
        token=TOKEN, location_id=LOCATION, base_url=BASE, throttle=True, sleep=fake.sleep, clock=fake.clock
    )
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", json=ghl_fixture("contact"), headers=SPENT)
    ghl.get(
        f"{BASE}/contacts/c_Dana7Lee01", json=ghl_fixture("contact"), headers={"X-RateLimit-Remaining": "99"}
    )
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", json=ghl_fixture("contact"))

    client.get_contact("c_Dana7Lee01")
    assert fake.slept == []
    fake.now += 3.0  # some work between calls counts towards the window
    client.get_contact("c_Dana7Lee01")
    assert fake.slept == [7.0]
    client.get_contact("c_Dana7Lee01")  # remaining was 99: no wait
    assert fake.slept == [7.0]


def test_without_throttle_a_spent_window_does_not_sleep(ghl):
    fake = FakeTime()
    client = GhlClient(token=TOKEN, location_id=LOCATION, base_url=BASE, sleep=fake.sleep, clock=fake.clock)
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", json=ghl_fixture("contact"), headers=SPENT)
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", json=ghl_fixture("contact"))

    client.get_contact("c_Dana7Lee01")
    client.get_contact("c_Dana7Lee01")

    assert fake.slept == []


# --- The burst budget is shared: what one client learns, every throttled client of the location obeys --


def test_a_spent_window_seen_by_any_client_pauses_every_throttled_client_of_the_location(ghl):
    fake = FakeTime()

    def new_client(location=LOCATION, *, throttle=True):
        return GhlClient(
            token=TOKEN,
            location_id=location,
            base_url=BASE,
            throttle=throttle,
            sleep=fake.sleep,
            clock=fake.clock,
        )

    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", json=ghl_fixture("contact"), headers=SPENT)
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", json=ghl_fixture("contact"))

    new_client(throttle=False).get_contact("c_Dana7Lee01")  # a live lookup (another worker) spends it
    new_client(throttle=False).get_contact("c_Dana7Lee01")  # live paths never wait
    new_client("loc_SunnySmiles02").get_contact("c_Dana7Lee01")  # another location's budget is its own
    assert fake.slept == []
    fake.now += 4.0
    new_client().get_contact("c_Dana7Lee01")  # a background task's first request
    assert fake.slept == [6.0]


def test_a_pause_longer_than_a_worker_should_sleep_is_a_rate_limit_without_a_request(ghl):
    fake = FakeTime()
    long_window = {**SPENT, "X-RateLimit-Interval-Milliseconds": "60000"}
    ghl.get(
        f"{BASE}/contacts/c_Dana7Lee01",
        status=429,
        json={"message": "Too Many Requests"},
        headers=long_window,
    )
    live = GhlClient(token=TOKEN, location_id=LOCATION, base_url=BASE, sleep=fake.sleep, clock=fake.clock)
    with pytest.raises(RateLimited):
        live.get_contact("c_Dana7Lee01")

    background = GhlClient(
        token=TOKEN, location_id=LOCATION, base_url=BASE, throttle=True, sleep=fake.sleep, clock=fake.clock
    )
    with pytest.raises(RateLimited) as raised:
        background.get_contact("c_Dana7Lee01")  # nothing registered: a request would fail the mock
    assert raised.value.retry_after == 60.0 and fake.slept == []
    assert len(ghl.calls) == 1


def test_without_a_working_cache_a_client_still_paces_itself(ghl, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    fake = FakeTime()
    client = GhlClient(
        token=TOKEN, location_id=LOCATION, base_url=BASE, throttle=True, sleep=fake.sleep, clock=fake.clock
    )
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", json=ghl_fixture("contact"), headers=SPENT)
    ghl.get(f"{BASE}/contacts/c_Dana7Lee01", json=ghl_fixture("contact"))

    client.get_contact("c_Dana7Lee01")
    client.get_contact("c_Dana7Lee01")

    assert fake.slept == [10.0]
