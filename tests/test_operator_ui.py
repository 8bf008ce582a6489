"""Operator UI: permissions, the call list (filters, search, pagination, query counts), the call page,
the Retry button, the dashboard and the timezone picker."""

import re
import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
import responses
from django.test import Client
from django.utils import timezone

from calls import outbox, selectors
from calls.models import Call, CallEvent, GhlSyncTask, ToolInvocation
from integrations.models import Agent
from tests.conftest import fixture_json
from tests.ghl_fake import FakeGhl
from tests.test_post_call_sync import CALL_ID, deliver

LIST = "/calls/"
NOON = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)  # 12:00 in Los Angeles


@pytest.fixture
def ghl():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeGhl(rsps)


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("operator", password="pw-operator-1", is_staff=True)


@pytest.fixture
def staff_client(staff):
    client = Client()
    client.force_login(staff)
    return client


def make_call(n, *, agent=None, at=None, **fields):
    """A call as the pipeline would have stored it (only what the list shows)."""
    defaults = {
        "call_id": f"call_{n:04d}",
        "agent": agent,
        "retell_agent_id": agent.retell_agent_id if agent else "agent_unknown",
        "agent_name": agent.name if agent else "Unknown agent",
        "call_type": "phone_call",
        "direction": "inbound",
        "from_number": f"+1415555{n:04d}",
        "to_number": "+14155559999",
        "status": "ended",
        "started_at": at or NOON - timedelta(minutes=n),
        "duration_ms": 30_000 + n,
        "transcript": f"Agent: Hello caller number {n}.\nUser: Hi.\n",
        "user_sentiment": "Neutral",
        "ghl_sync_status": "synced",
    }
    defaults.update(fields)
    return Call.objects.create(**defaults)


def listed_ids(response):
    return re.findall(r'href="/calls/(call_[^/"]+)/"', response.content.decode())


# --- Permissions ------------------------------------------------------------------------------


def ui_urls(call):
    task = GhlSyncTask.objects.create(call=call, kind="note", dedupe_key="k1", status="failed")
    event = CallEvent.objects.create(
        call=call, retell_call_id=call.call_id, event="call_ended", raw_body="{}"
    )
    return [
        ("get", "/"),
        ("get", LIST),
        ("get", f"/calls/{call.call_id}/"),
        ("get", f"/calls/{call.call_id}/events/{event.pk}/raw"),
        ("post", f"/calls/{call.call_id}/sync-tasks/{task.pk}/retry"),
        ("post", "/timezone"),
    ]


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_the_login_page(client):
    for method, url in ui_urls(make_call(1)):
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/?next="), url
    assert GhlSyncTask.objects.get().status == "failed"  # the anonymous POST changed nothing


@pytest.mark.django_db
def test_logged_in_non_staff_users_get_403(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("caller", password="x-caller-pw-1"))
    for method, url in ui_urls(make_call(1)):
        response = getattr(client, method)(url)
        assert response.status_code == 403, url
        assert b"operator pages are for staff accounts" in response.content
    assert GhlSyncTask.objects.get().status == "failed"


@pytest.mark.django_db
def test_staff_see_every_page(staff_client):
    for method, url in ui_urls(make_call(1)):
        if method == "get":
            assert staff_client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_inactive_staff_are_refused(client, staff):
    client.force_login(staff)
    staff.is_active = False
    staff.save()
    assert client.get(LIST).status_code == 302  # the session no longer authenticates


@pytest.mark.django_db
def test_login_form_then_redirect_back(client, staff):
    response = client.get(LIST, follow=True)
    assert b"Password" in response.content
    response = client.post(
        "/admin/login/?next=/calls/", {"username": "operator", "password": "pw-operator-1", "next": "/calls/"}
    )
    assert response.status_code == 302 and response["Location"] == "/calls/"


# --- The call list ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_shows_newest_first_with_every_column(staff_client, agent):
    older = make_call(2, agent=agent, dynamic_variables={"customer_name": "Dana Lee"}, call_successful=True)
    newer = make_call(
        1,
        direction="outbound",
        to_number="+14155550177",
        user_sentiment="Negative",
        call_successful=False,
        disconnection_reason="user_hangup",
        ghl_sync_status="failed",
        ghl_sync_error="GHL 404: Contact not found",
        metadata={"routing_rule": "vip"},
    )
    response = staff_client.get(LIST)
    html = response.content.decode()
    assert listed_ids(response) == [newer.call_id, older.call_id]
    assert "Dana Lee" in html and "+14155550002" in html  # inbound: the caller is from_number
    assert "+14155550177" in html  # outbound: the caller is the number we dialled
    assert "Bright Dental Receptionist" in html and "Unknown agent" in html
    assert "0:30" in html  # duration
    assert "successful" in html and "unsuccessful" in html and "user hangup" in html
    assert "Negative" in html and 'title="GHL 404: Contact not found"' in html
    assert "rule: vip" in html
    assert "2 in total" in html


@pytest.mark.django_db
def test_a_call_no_rule_matched_shows_no_rule(staff_client):
    # Our inbound answer always carries "routing_rule"; null when no rule matched. SQLite reads a JSON
    # null key as the text 'null': the list must not print "rule: null" for those calls.
    make_call(1, metadata={"routing_rule": None, "contact_found": False})
    make_call(2, metadata={"routing_rule": "VIP callers"})
    html = staff_client.get(LIST).content.decode()
    assert "rule: VIP callers" in html and "rule: null" not in html and "rule: None" not in html
    assert listed_ids(staff_client.get(LIST, {"routing_rule": "VIP callers"})) == ["call_0002"]


@pytest.mark.django_db
def test_list_times_are_in_the_operator_timezone(staff_client):
    make_call(1, at=datetime(2026, 12, 3, 20, 5, tzinfo=UTC))
    assert "20:05" in staff_client.get(LIST).content.decode()  # settings.TIME_ZONE (UTC)
    staff_client.cookies["tz"] = "America/Los_Angeles"
    html = staff_client.get(LIST).content.decode()
    assert "12:05" in html and "20:05" not in html


@pytest.fixture
def varied_calls(agent, location):
    other = Agent.objects.create(retell_agent_id="agent_sales", name="Sales", location=location)
    return {
        "a": make_call(1, agent=agent, user_sentiment="Positive", call_successful=True),
        "b": make_call(
            2, agent=other, direction="outbound", status="not_connected", ghl_sync_status="failed"
        ),
        "c": make_call(
            3, agent=agent, user_sentiment="Negative", call_successful=False, metadata={"routing_rule": "vip"}
        ),
        "d": make_call(
            4, direction="web", call_type="web_call", status="error", ghl_sync_status="no_contact"
        ),
        "e": make_call(5, agent=other, at=NOON - timedelta(days=3), ghl_sync_status="pending"),
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query, expected",
    [
        ({"direction": "outbound"}, ["b"]),
        ({"direction": "web"}, ["d"]),
        ({"status": "not_connected"}, ["b"]),
        ({"status": "error"}, ["d"]),
        ({"sentiment": "Positive"}, ["a"]),
        ({"sentiment": "Negative"}, ["c"]),
        ({"success": "yes"}, ["a"]),
        ({"success": "no"}, ["c"]),
        ({"success": "unknown"}, ["b", "d", "e"]),
        ({"sync": "failed"}, ["b"]),
        ({"sync": "pending"}, ["e"]),
        ({"sync": "no_contact"}, ["d"]),
        ({"sync": "synced"}, ["a", "c"]),
        ({"routing_rule": "vip"}, ["c"]),
        ({"routing_rule": "nope"}, []),
        ({"date_from": "2026-12-03"}, ["a", "b", "c", "d"]),
        ({"date_to": "2026-11-30"}, ["e"]),
        ({"date_from": "2026-11-30", "date_to": "2026-11-30"}, ["e"]),
        ({"direction": "inbound", "sentiment": "Neutral"}, ["e"]),
    ],
)
def test_each_filter_narrows_the_list(staff_client, varied_calls, query, expected):
    response = staff_client.get(LIST, query)
    assert response.status_code == 200
    assert listed_ids(response) == [varied_calls[key].call_id for key in expected]


@pytest.mark.django_db
def test_agent_filter(staff_client, varied_calls):
    sales = Agent.objects.get(name="Sales")
    response = staff_client.get(LIST, {"agent": sales.pk})
    assert listed_ids(response) == [varied_calls["b"].call_id, varied_calls["e"].call_id]


@pytest.mark.django_db
def test_date_range_is_read_in_the_operator_timezone(staff_client):
    # 02:00 UTC on Dec 4 is still Dec 3 in Los Angeles.
    late = make_call(1, at=datetime(2026, 12, 4, 2, 0, tzinfo=UTC))
    query = {"date_from": "2026-12-03", "date_to": "2026-12-03"}
    assert listed_ids(staff_client.get(LIST, query)) == []
    staff_client.cookies["tz"] = "America/Los_Angeles"
    assert listed_ids(staff_client.get(LIST, query)) == [late.call_id]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        {"date_from": "yesterday"},
        {"agent": "999999"},
        {"agent": "x"},
        {"direction": "sideways"},
        {"sync": "maybe"},
        {"date_from": "2026-12-05", "date_to": "2026-12-01"},
        {"before": "garbage"},
        {"after": "12.x"},
        {"before": "99999999999999999999999.1"},
        {"q": "x" * 500},
    ],
)
def test_bad_filter_values_are_reported_not_500(staff_client, varied_calls, query):
    response = staff_client.get(LIST, query)
    assert response.status_code == 200
    assert listed_ids(response)  # the invalid filter is ignored, not applied as "match nothing"
    if set(query) - {"before", "after"}:
        assert 'class="error"' in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "text, expected",
    [
        ("+14155550003", ["c"]),  # E.164
        ("(415) 555-0003", ["c"]),  # as an operator types it (DEFAULT_PHONE_REGION US)
        ("5550003", ["c"]),  # digits inside a number
        ("5559999", ["a", "b", "c", "d", "e"]),  # our own number: every call
        ("call_0002", ["b"]),  # call id
        ("Hello caller number 2", ["b"]),  # words said (call b's transcript)
        ("c_Dana7Lee01", ["a"]),  # GHL contact id
        ("Rivera", ["b"]),  # contact name (from the dynamic variables)
        ("sam rivera", ["b"]),
        ("teeth cleaning", ["a"]),  # words said in the call
        ("CLEANING", ["a"]),
        ("zebra", []),
    ],
)
def test_search_finds_phone_name_id_and_transcript(staff_client, varied_calls, text, expected):
    Call.objects.filter(pk=varied_calls["a"].pk).update(
        ghl_contact_id="c_Dana7Lee01", transcript="User: I'd like my teeth cleaning booked, please."
    )
    Call.objects.filter(pk=varied_calls["b"].pk).update(dynamic_variables={"customer_name": "Sam Rivera"})
    response = staff_client.get(LIST, {"q": text})
    assert listed_ids(response) == [varied_calls[key].call_id for key in expected]


@pytest.mark.django_db
def test_an_exact_identifier_shows_just_its_calls(staff_client, varied_calls):
    # Call a's transcript mentions call b's id and number; searching either means call b.
    Call.objects.filter(pk=varied_calls["a"].pk).update(
        transcript="User: my other call was call_0002 from 4155550002, you see"
    )
    assert listed_ids(staff_client.get(LIST, {"q": "call_0002"})) == [varied_calls["b"].call_id]
    assert listed_ids(staff_client.get(LIST, {"q": "+14155550002"})) == [varied_calls["b"].call_id]
    assert listed_ids(staff_client.get(LIST, {"q": "you see"})) == [varied_calls["a"].call_id]


@pytest.mark.django_db
def test_keyset_pages_cover_every_call_once_even_with_ties(staff_client, monkeypatch):
    monkeypatch.setattr(selectors, "PAGE_SIZE", 5)
    same_instant = NOON - timedelta(hours=1)
    calls = [make_call(n, at=same_instant if 4 <= n <= 9 else None) for n in range(1, 13)]
    expected = [c.call_id for c in sorted(calls, key=lambda c: (c.started_at, c.pk), reverse=True)]

    pages, url = [], LIST + "?direction=inbound"
    while url:
        response = staff_client.get(url)
        pages.append(listed_ids(response))
        older = re.search(r'href="\?([^"]*before=[^"]+)"[^>]*rel="next"', response.content.decode())
        url = LIST + "?" + older.group(1).replace("&amp;", "&") if older else None
    assert [len(p) for p in pages] == [5, 5, 2]
    assert sum(pages, []) == expected
    assert "direction=inbound" in response.content.decode()  # filters survive paging

    newer = re.search(r'href="\?([^"]*after=[^"]+)"[^>]*rel="prev"', response.content.decode())
    back = staff_client.get(LIST + "?" + newer.group(1).replace("&amp;", "&"))
    assert listed_ids(back) == pages[1]


@pytest.mark.django_db
def test_count_is_bounded(staff_client, monkeypatch):
    monkeypatch.setattr(selectors, "COUNT_LIMIT", 3)
    for n in range(1, 6):
        make_call(n)
    assert "more than 3 in total" in staff_client.get(LIST).content.decode()
    assert "1 matching" in staff_client.get(LIST, {"q": "call_0002"}).content.decode()


@pytest.mark.django_db
def test_calls_that_never_started_are_listed_by_when_we_heard_of_them(staff_client):
    started = make_call(1, at=timezone.now() - timedelta(hours=1))
    failed_dial = make_call(2, started_at=None, status="not_connected", disconnection_reason="dial_failed")
    failed_dial.refresh_from_db()  # occurred_at is computed by the database
    assert failed_dial.occurred_at == failed_dial.created_at
    assert listed_ids(staff_client.get(LIST)) == [failed_dial.call_id, started.call_id]


def many_calls(agent, count, start=1):
    for n in range(start, start + count):
        make_call(n, agent=agent if n % 2 else None, dynamic_variables={"customer_name": f"Caller {n}"})


@pytest.mark.django_db
def test_list_query_count_does_not_grow_with_rows(staff_client, agent, django_assert_max_num_queries):
    # session, user, the chosen agent, the page, the bounded count, the agents for the <select>, the
    # rule names suggested for the routing rule filter
    many_calls(agent, 3)
    for n in range(5):
        Agent.objects.create(retell_agent_id=f"agent_{n}", name=f"Agent {n}")
    with django_assert_max_num_queries(7):
        assert staff_client.get(LIST, {"agent": agent.pk}).status_code == 200
    many_calls(agent, 60, start=100)
    with django_assert_max_num_queries(7):  # a search adds one: does the text name a call exactly?
        response = staff_client.get(LIST, {"q": "caller", "sync": "synced"})
    assert len(listed_ids(response)) == selectors.PAGE_SIZE


@pytest.mark.django_db
def test_the_routing_rule_filter_suggests_todays_rule_names(staff_client):
    from integrations.models import RoutingRule

    RoutingRule.objects.create(name="VIP <callers>", priority=5)
    html = staff_client.get(LIST).content.decode()
    assert 'list="routing-rule-names"' in html
    assert '<datalist id="routing-rule-names"><option value="VIP &lt;callers&gt;"></datalist>' in html


@pytest.mark.django_db
def test_list_never_loads_transcripts(agent):
    make_call(1, agent=agent, transcript_object=[{"role": "agent", "content": "x" * 10}])
    [row] = selectors.call_page(selectors.call_list_queryset({})).calls
    assert {"transcript", "transcript_object", "transcript_with_tool_calls", "call_analysis"} <= (
        row.get_deferred_fields()
    )


# --- The call page ---------------------------------------------------------------------------


@pytest.fixture
def analysed_call(client, ghl, agent):
    """Dana's call as Retell delivers it: started, ended (twice), analysed; synced to GHL."""
    deliver(client, "retell_call_started", "retell_call_ended", "retell_call_ended", "retell_call_analyzed")
    return Call.objects.get(call_id=CALL_ID)


@pytest.mark.django_db
def test_call_page_shows_the_conversation_with_tool_calls_inline(staff_client, analysed_call):
    html = staff_client.get(f"/calls/{CALL_ID}/").content.decode()
    said = [
        "Thanks for calling Bright Dental, this is Ava.",
        "Hi Ava, it&#x27;s Dana Lee.",
        "check_availability",
        "2026-12-08T14:00:00-08:00",  # its result, inline
        "Two o&#x27;clock is perfect.",
        "book_appointment",
        "a_7Hk2mQ",
        "Have a wonderful day!",
    ]
    positions = [html.index(text) for text in said]
    assert positions == sorted(positions)
    assert html.count('class="turn agent"') == 5 and html.count('class="turn user"') == 4
    assert html.count('class="tool-call') == 2


@pytest.mark.django_db
def test_call_page_facts_analysis_links_and_recording(staff_client, analysed_call):
    html = staff_client.get(f"/calls/{CALL_ID}/").content.decode()
    assert "Inbound" in html and "with Dana Lee" in html
    assert "Dana Lee called to book a teeth cleaning." in html
    assert "appointment_booked" in html and "cleaning" in html
    assert '<audio controls preload="none" src="https://dxc03zgurdly9.cloudfront.net/' in html
    assert (
        'href="https://dxc03zgurdly9.cloudfront.net/call_8f14e45fceea167a5a36dedd4bea2543/public.log"' in html
    )
    assert (
        'href="https://app.gohighlevel.com/v2/location/loc_BrightDental1/contacts/detail/c_Dana7Lee01"'
        in html
    )
    assert "0:37" in html and "agent hangup" in html and "$0.13" in html
    assert "returning-patient" in html  # the routing rule Retell copied into the metadata
    assert f'href="/admin/calls/call/{analysed_call.pk}/change/"' in html


@pytest.mark.django_db
def test_call_page_lists_every_webhook_event_and_sync_task(staff_client, analysed_call):
    html = staff_client.get(f"/calls/{CALL_ID}/").content.decode()
    assert "3 received" in html
    for event in ("call_started", "call_ended", "call_analyzed"):
        assert f'<strong class="mono">{event}</strong>' in html
    assert "×2" in html  # call_ended was delivered twice
    assert "&quot;event&quot;: &quot;call_analyzed&quot;" in html  # the raw JSON, collapsible
    note = GhlSyncTask.objects.get(call=analysed_call, kind="note")
    assert f'id="task-{note.pk}"' in html and note.ghl_id in html
    assert "Retry" not in html.split('id="sync"')[1].split("</section>")[0]  # nothing to retry


@pytest.mark.django_db
def test_call_page_shows_tool_invocations_with_latency_and_errors(staff_client, analysed_call):
    ToolInvocation.objects.create(
        call_id=CALL_ID,
        tool_name="check_availability",
        source="custom_function",
        arguments={"date": "2026-12-08", "time_of_day": "afternoon"},
        result={"slots": []},
        status="succeeded",
        success=True,
        latency_ms=412.4,
    )
    ToolInvocation.objects.create(
        call_id=CALL_ID,
        tool_name="book_appointment",
        source="mcp",
        arguments={"start_time": "x"},
        status="failed",
        success=False,
        error="GHL 500: calendar unavailable",
        latency_ms=1830,
    )
    ToolInvocation.objects.create(call_id="call_other", tool_name="add_note", source="mcp", latency_ms=5)
    html = staff_client.get(f"/calls/{CALL_ID}/").content.decode()
    tools = html.split('id="tools"')[1]
    assert "412 ms" in tools and "1.83 s" in tools and "GHL 500: calendar unavailable" in tools
    assert "add_note" not in tools
    assert "412 ms" in html.split('id="transcript"')[1].split("</section>")[0]  # matched to its tool call


@pytest.mark.django_db
def test_large_event_bodies_are_linked_not_inlined(staff_client, analysed_call, monkeypatch):
    monkeypatch.setattr(selectors, "INLINE_EVENT_BYTES", 100)
    html = staff_client.get(f"/calls/{CALL_ID}/").content.decode()
    event = CallEvent.objects.get(event="call_analyzed")
    assert f"/calls/{CALL_ID}/events/{event.pk}/raw" in html
    raw = staff_client.get(f"/calls/{CALL_ID}/events/{event.pk}/raw")
    assert raw["Content-Type"] == "application/json; charset=utf-8"
    assert raw.content.decode() == event.raw_body  # exactly the bytes Retell sent
    assert staff_client.get(f"/calls/call_other/events/{event.pk}/raw").status_code == 404


@pytest.mark.django_db
def test_inlined_event_bodies_stop_at_a_total_per_page(staff_client, monkeypatch):
    call = make_call(1)
    for n in range(5):
        CallEvent.objects.create(
            call=call, retell_call_id=call.call_id, event=f"e{n}", raw_body="[" + "1," * 40 + "1]"
        )
    monkeypatch.setattr(selectors, "INLINE_EVENTS_TOTAL_BYTES", 250)  # three bodies of 83 characters
    html = staff_client.get("/calls/call_0001/").content.decode()
    assert html.count('<pre class="json">') == 3 and html.count("Open the raw body") == 2


@pytest.mark.django_db
def test_vendor_urls_only_become_links_when_they_are_http(staff_client):
    make_call(1, recording_url="javascript:alert(1)", public_log_url="https://example.com/log")
    html = staff_client.get("/calls/call_0001/").content.decode()
    assert "javascript:" not in html and "<audio" not in html
    assert 'href="https://example.com/log"' in html


@pytest.mark.django_db
def test_call_page_falls_back_to_plain_transcripts(staff_client):
    make_call(1, transcript="Agent: Hello there.\nUser: Who is this?\n")
    html = staff_client.get("/calls/call_0001/").content.decode()
    assert 'class="turn agent"' in html and 'class="turn user"' in html and "Who is this?" in html


@pytest.mark.django_db
def test_unknown_call_is_404(staff_client):
    assert staff_client.get("/calls/call_nope/").status_code == 404


@pytest.mark.django_db
def test_call_page_query_count_does_not_grow(staff_client, analysed_call, django_assert_max_num_queries):
    # session, user, call (+agent, location), tool invocations, events, small bodies, sync tasks
    # (+1, the routing decision, once the routing log is merged)
    with django_assert_max_num_queries(8):
        staff_client.get(f"/calls/{CALL_ID}/")
    for n in range(30):
        CallEvent.objects.create(
            call=analysed_call, retell_call_id=CALL_ID, event="transcript_updated", raw_body="{}"
        )
        ToolInvocation.objects.create(call_id=CALL_ID, tool_name=f"tool_{n}", source="mcp", latency_ms=n)
        GhlSyncTask.objects.create(call=analysed_call, kind="tags", dedupe_key=f"extra:{n}", status="failed")
    with django_assert_max_num_queries(8):
        response = staff_client.get(f"/calls/{CALL_ID}/")
    assert response.content.decode().count("transcript_updated") == 30


def routing_decision(**fields):
    """A real calls.RoutingDecision row, as inbound routing writes it."""
    from calls.models import RoutingDecision

    defaults = {
        "event": "call_inbound",
        "from_number": "+14155550123",
        "to_number": "+14155559999",
        "rule_name": "returning-patient",
        "contact_name": "Dana Lee",
        "ghl_contact_id": "c_Dana7Lee01",
        "lookup": "found",
        "from_cache": True,
        "ghl_failed": False,
        "ghl_error": "",
        "rejected": False,
        "override_agent_id": "agent_vip",
        "answer": {"call_inbound": {"override_agent_id": "agent_vip"}},
        "elapsed_ms": 12.5,
    }
    return RoutingDecision.objects.create(**{**defaults, **fields})


@pytest.mark.django_db
def test_call_page_shows_the_routing_decision(staff_client):
    call = make_call(1)
    routing_decision(call=call)
    html = staff_client.get("/calls/call_0001/").content.decode()
    routing = html.split('id="routing"')[1].split("</section>")[0]
    assert "returning-patient" in routing and "Dana Lee" in routing and "Contact found (cached)" in routing
    assert "agent_vip" in routing and "12 ms" in routing and "&quot;override_agent_id&quot;" in routing

    other = make_call(2)
    routing_decision(call=other, ghl_failed=True, lookup="failed", ghl_error="GHL timed out", rule_name="")
    routing = staff_client.get("/calls/call_0002/").content.decode().split('id="routing"')[1]
    assert (
        "GHL failed, so the default route answered: GHL timed out" in routing and "default route" in routing
    )

    # Fail-open still applies the rules that need no contact (after hours, block list): say so.
    night = make_call(3)
    routing_decision(
        call=night, ghl_failed=True, lookup="failed", ghl_error="GHL timed out", rule_name="Night"
    )
    routing = staff_client.get("/calls/call_0003/").content.decode().split('id="routing"')[1]
    assert "GHL failed, so only rules that need no contact were tried: GHL timed out" in routing
    assert "default route answered" not in routing

    # The agent it routed to is named when it is the call's agent (it usually is).
    vip = Agent.objects.create(retell_agent_id="agent_vip", name="VIP concierge")
    routed = make_call(4, agent=vip)
    routing_decision(call=routed)
    routing = staff_client.get("/calls/call_0004/").content.decode().split('id="routing"')[1]
    assert "<dt>Agent</dt><dd>VIP concierge</dd>" in routing


@pytest.mark.django_db
def test_dashboard_lists_inbound_fallbacks(staff_client):
    assert "No fallbacks" in staff_client.get("/").content.decode()
    call = make_call(1)
    routing_decision(ghl_failed=True, ghl_error="GHL HTTP 503", call=call)
    routing_decision()  # GHL answered: not a fallback
    html = staff_client.get("/").content.decode().split('id="fallbacks"')[1].split("</section>")[0]
    assert 'href="/calls/call_0001/"' in html and "GHL HTTP 503" in html and "→ +14155559999" in html
    assert html.count("<li>") == 1  # the decision GHL answered in time is not a fallback


# --- Retry ------------------------------------------------------------------------------------


@pytest.fixture
def failed_note(client, ghl, agent):
    ghl.fail("POST", r"/notes$", 404, body={"message": "Contact not found"})
    deliver(client, "retell_call_ended")
    task = GhlSyncTask.objects.get(kind="note")
    assert task.status == "failed" and Call.objects.get().ghl_sync_status == "failed"
    return task


@pytest.mark.django_db
def test_retry_button_requeues_a_failed_task(
    staff_client, failed_note, ghl, django_capture_on_commit_callbacks
):
    page = staff_client.get(f"/calls/{CALL_ID}/").content.decode()
    retry_url = f"/calls/{CALL_ID}/sync-tasks/{failed_note.pk}/retry"
    assert f'action="{retry_url}"' in page and "Contact not found" in page
    with django_capture_on_commit_callbacks() as callbacks:
        response = staff_client.post(retry_url, follow=True)
    assert response.redirect_chain == [(f"/calls/{CALL_ID}/#sync", 302)]
    assert "Call note queued for retry." in response.content.decode()
    assert len(callbacks) == 1  # handed to the queue once the transaction commits
    failed_note.refresh_from_db()
    assert failed_note.status == "pending" and failed_note.attempts == 0
    assert Call.objects.get().ghl_sync_status == "pending"

    outbox.run_due_tasks()
    assert GhlSyncTask.objects.get(pk=failed_note.pk).status == "done" and len(ghl.notes) == 1
    assert "GHL: synced" in staff_client.get(f"/calls/{CALL_ID}/").content.decode()


@pytest.mark.django_db
def test_retry_of_a_running_task_says_so_and_changes_nothing(staff_client, failed_note):
    GhlSyncTask.objects.filter(pk=failed_note.pk).update(status="running")
    response = staff_client.post(f"/calls/{CALL_ID}/sync-tasks/{failed_note.pk}/retry", follow=True)
    assert "is running right now" in response.content.decode()
    assert GhlSyncTask.objects.get(pk=failed_note.pk).status == "running"


@pytest.mark.django_db
def test_retry_needs_post_csrf_and_the_right_call(staff, failed_note):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff)
    url = f"/calls/{CALL_ID}/sync-tasks/{failed_note.pk}/retry"
    assert strict.post(url).status_code == 403  # no CSRF token
    assert strict.get(url).status_code == 405
    other = make_call(1)
    assert strict.get(f"/calls/{other.call_id}/").status_code == 200
    token = strict.cookies["csrftoken"].value
    assert (
        strict.post(
            f"/calls/{other.call_id}/sync-tasks/{failed_note.pk}/retry", HTTP_X_CSRFTOKEN=token
        ).status_code
        == 404
    )
    assert GhlSyncTask.objects.get(pk=failed_note.pk).status == "failed"
    assert strict.post(url, HTTP_X_CSRFTOKEN=token).status_code == 302
    assert GhlSyncTask.objects.get(pk=failed_note.pk).status == "pending"


# --- Dashboard --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_dashboard(staff_client, agent, failed_note):
    now = timezone.now()
    Call.objects.filter(call_id=CALL_ID).update(started_at=now - timedelta(hours=2))  # Dana's call: today
    for n in range(1, 4):
        make_call(n, agent=agent, at=now - timedelta(days=1), call_successful=n != 3)
    make_call(
        4,
        agent=agent,
        at=now - timedelta(days=1),
        status="not_connected",
        disconnection_reason="dial_no_answer",
    )
    make_call(5, at=now - timedelta(days=40))  # outside every window
    for latency in (100, 300):
        ToolInvocation.objects.create(
            tool_name="book_appointment", source="mcp", latency_ms=latency, status="succeeded"
        )
    ToolInvocation.objects.create(tool_name="lookup_contact", source="mcp", latency_ms=50, status="failed")

    html = staff_client.get("/").content.decode()
    assert "1 failed task" in html.replace("<strong>", "").replace("</strong>", "")
    assert f'href="/calls/{CALL_ID}/#sync"' in html and "Contact not found" in html
    agents = html.split('id="agents"')[1].split("</section>")[0]
    # Dana's call (today) + 4 yesterday = 5 calls; 4 connected; 2 of 3 analysed successful.
    assert "Bright Dental Receptionist" in agents
    assert re.search(r'<td class="num">5</td>', agents)
    assert "80%" in agents and "67%" in agents and "(2/3)" in agents
    tools = html.split('id="tools"')[1].split("</section>")[0]
    assert tools.index("book_appointment") < tools.index("lookup_contact")  # slowest first
    assert "200 ms" in tools and "300 ms" in tools
    assert "No fallbacks: GHL answered every inbound lookup in time." in html
    assert html.count("<rect") == 2 * 14
    assert "5 calls" in html  # in the 14-day chart (the 40-day-old call is not)


@pytest.mark.django_db
def test_dashboard_ignores_failed_tasks_without_a_call(staff_client):
    GhlSyncTask.objects.create(kind="note", dedupe_key="orphan", status="failed", last_error="lost")
    html = staff_client.get("/").content.decode()
    assert "<h1>Dashboard</h1>" in html and "lost" not in html


@pytest.mark.django_db
def test_dashboard_query_count(staff_client, agent, django_assert_max_num_queries):
    many_calls(agent, 40)
    # session, user, calls per day, agent rates, sync counts, failed tasks, slowest tools
    # (+1, the inbound fallbacks, once the routing log is merged)
    with django_assert_max_num_queries(8):
        assert staff_client.get("/").status_code == 200


@pytest.mark.django_db
def test_calls_per_day_buckets_by_the_operator_timezone():
    tz = zoneinfo.ZoneInfo("America/Los_Angeles")
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)  # Dec 4, 04:00 in Los Angeles
    make_call(1, at=datetime(2026, 12, 4, 6, 0, tzinfo=UTC))  # Dec 3, 22:00 LA
    make_call(2, at=datetime(2026, 12, 4, 9, 0, tzinfo=UTC), direction="outbound")  # Dec 4, 01:00 LA
    days = selectors.calls_per_day(days=2, now=now, tz=tz)
    assert [(d.isoformat(), total, inbound, outbound) for d, total, inbound, outbound in days] == [
        ("2026-12-03", 1, 1, 0),
        ("2026-12-04", 1, 0, 1),
    ]


# --- Timezone picker --------------------------------------------------------------------------


@pytest.mark.django_db
def test_timezone_picker_sets_a_cookie_and_goes_back(staff_client):
    response = staff_client.post("/timezone", {"tz": "Europe/Paris", "next": "/calls/?direction=inbound"})
    assert response.status_code == 302 and response["Location"] == "/calls/?direction=inbound"
    assert response.cookies["tz"].value == "Europe/Paris"
    assert "<option selected>Europe/Paris</option>" in staff_client.get("/").content.decode()


@pytest.mark.django_db
def test_timezone_picker_offers_region_zones_and_the_configured_one(staff_client, settings):
    settings.TIME_ZONE = "US/Pacific"  # a legacy alias: not in the list, still the default
    html = staff_client.get("/").content.decode()
    assert "<option selected>US/Pacific</option>" in html and "<option>Europe/Paris</option>" in html
    assert "<option>US/Eastern</option>" not in html and "<option>UTC</option>" in html


@pytest.mark.django_db
def test_timezone_picker_rejects_unknown_zones_and_foreign_redirects(staff_client):
    response = staff_client.post("/timezone", {"tz": "Mars/Olympus", "next": "https://evil.example.com/"})
    assert response["Location"] == "/" and "tz" not in response.cookies
    staff_client.cookies["tz"] = "../../etc/passwd"
    assert staff_client.get(LIST).status_code == 200  # a forged cookie falls back to TIME_ZONE


# --- Pieces -----------------------------------------------------------------------------------


def test_cursor_round_trip_and_garbage():
    call = Call(pk=42)
    call.occurred_at = datetime(2026, 12, 3, 20, 0, 0, 123456, tzinfo=UTC)
    assert selectors.decode_cursor(selectors.encode_cursor(call)) == (call.occurred_at, 42)
    for garbage in ("", "1", "x.1", "1.x", "1.-2", None, "9" * 40 + ".1"):
        assert selectors.decode_cursor(garbage) is None


def test_search_picks_branches_by_what_was_typed():
    def lookups(text, vendor="sqlite"):
        return str(selectors.search_condition(text, vendor=vendor))

    assert "'from_number', '+14155550123'" in lookups("+1 415 555 0123")
    assert "transcript" not in lookups("+1 415 555 0123")
    assert "'from_number__contains', '012345'" in lookups("0123 45")
    assert "transcript__icontains" in lookups("cleaning") and "from_number" not in lookups("cleaning")
    assert "search_document" in lookups("cleaning", "postgresql")
    assert "transcript" not in lookups("a")  # too short to search words


def test_fixture_payload_has_tool_calls():
    # The call page test relies on this shape of Retell's transcript_with_tool_calls.
    items = fixture_json("retell_call_analyzed")["call"]["transcript_with_tool_calls"]
    assert {"tool_call_invocation", "tool_call_result"} <= {item["role"] for item in items}
