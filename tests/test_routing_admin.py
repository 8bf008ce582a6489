"""Routing in the admin: rules, numbers, decisions, and the routing tester (same answer as the endpoint)."""

import html
import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import requests
import responses
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from calls.models import Call, RoutingDecision
from integrations.models import Agent, PhoneNumber, RoutingRule
from tests.conftest import fixture_json, post_signed

SEARCH = "https://services.leadconnectorhq.com/contacts/search/duplicate"
TESTER = "/admin/integrations/routingrule/test/"
CALLER = "+14155550123"
DIALLED = "+14155559999"
LA = ZoneInfo("America/Los_Angeles")
SUNDAY_9PM = datetime(2026, 12, 6, 21, 0, tzinfo=LA)


@pytest.fixture
def ghl():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def setup(location):
    main = Agent.objects.create(retell_agent_id="agent_main", name="Main", location=location)
    vip = Agent.objects.create(
        retell_agent_id="agent_vip", name="VIP", location=location, retell_agent_version=4
    )
    night = Agent.objects.create(retell_agent_id="agent_night", name="Night", location=location)
    PhoneNumber.objects.create(number=DIALLED, label="Main", location=location, default_agent=main)
    RoutingRule.objects.create(
        name="Weekday VIPs",
        priority=10,
        tags_any=["vip"],
        days=[0, 1, 2, 3, 4],
        agent=vip,
        dynamic_variables={"vip_tier": "gold", "hello": "Hi {{ contact.firstName }}"},
    )
    RoutingRule.objects.create(
        name="After hours",
        priority=20,
        start_time="18:00",
        end_time="08:00",
        agent=night,
        dynamic_variables={"last_outcome": '{{ custom.cf_LastOutcome|default:"none" }}'},
        metadata={"shift": "night"},
    )
    return location


def shown_answer(page):
    """The JSON the tester page displays, parsed back from its HTML."""
    shown = re.search(r'<pre id="answer-json"[^>]*>(.*?)</pre>', page.content.decode(), re.DOTALL)
    return json.loads(html.unescape(shown.group(1)))


def form_params(**overrides):
    return {
        "from_number": CALLER,
        "to_number": DIALLED,
        "event": "call_inbound",
        "date": "2026-12-06",
        "time": "21:00",
        "timezone": "America/Los_Angeles",
        **overrides,
    }


@pytest.mark.django_db
@pytest.mark.parametrize("event", ["call_inbound", "chat_inbound"])
@pytest.mark.parametrize("fresh", [False, True])
def test_tester_shows_exactly_what_the_endpoint_answers(
    admin_client, client, ghl, setup, monkeypatch, event, fresh
):
    ghl.get(SEARCH, json=fixture_json("ghl_duplicate_search_found"))
    monkeypatch.setattr("django.utils.timezone.now", lambda: SUNDAY_9PM)
    live = post_signed(
        client,
        "/api/webhooks/inbound",
        {"event": event, event: {"from_number": CALLER, "to_number": DIALLED}},
    ).json()

    page = admin_client.get(TESTER, form_params(event=event, fresh="on" if fresh else ""))
    assert page.status_code == 200
    tested = page.context["result"].answer
    # The live answer only adds the id of the decision it recorded.
    decision_id = live[event]["metadata"].pop("routing_decision_id")
    assert tested == live
    assert live[event]["override_agent_id"] == "agent_night"  # Sunday 9pm: not a weekday, after hours
    assert live[event]["dynamic_variables"]["last_outcome"] == "booked"
    assert RoutingDecision.objects.get().pk.hex == decision_id.replace("-", "")  # the tester records none
    assert shown_answer(page) == live  # and the page shows that JSON
    assert ">After hours</a>" in page.content.decode()
    assert "Sunday 2026-12-06 21:00 PST" in page.content.decode()  # the time tested, in its own zone
    assert "Weekday VIPs" in page.content.decode() and "outside the time window" in page.content.decode()
    assert len(ghl.calls) == (2 if fresh else 1)  # a fresh test skips the cache the webhook filled


@pytest.mark.django_db
def test_tester_reads_the_time_in_the_chosen_timezone(admin_client, ghl, setup):
    ghl.get(SEARCH, json=fixture_json("ghl_duplicate_search_found"))
    # Monday 10:00 in Los Angeles: a weekday VIP. The same wall time in Tokyo is Sunday 17:00 in LA.
    weekday = admin_client.get(TESTER, form_params(date="2026-12-07", time="10:00"))
    tokyo = admin_client.get(TESTER, form_params(date="2026-12-07", time="10:00", timezone="Asia/Tokyo"))
    assert weekday.context["result"].answer["call_inbound"]["override_agent_id"] == "agent_vip"
    assert weekday.context["result"].answer["call_inbound"]["override_agent_version"] == 4
    assert tokyo.context["result"].decision.rule is None  # Sunday 17:00: neither rule
    assert "Dana" in weekday.content.decode() and "c_Dana7Lee01" in weekday.content.decode()


@pytest.mark.django_db
def test_tester_shows_a_ghl_failure_and_the_fail_open_answer(admin_client, ghl, setup):
    ghl.get(SEARCH, body=requests.exceptions.ConnectTimeout("connect timed out"))
    page = admin_client.get(TESTER, form_params(date="2026-12-07", time="10:00"))
    result = page.context["result"]
    assert result.lookup.status == "failed"
    assert result.answer["call_inbound"]["override_agent_id"] == "agent_main"
    content = page.content.decode()
    assert "connect timed out" in content and "GHL failed (fail-open)" in content
    assert "pit-test-token-0000" not in content


@pytest.mark.django_db
def test_tester_form_errors_and_empty_form(admin_client, setup):
    empty = admin_client.get(TESTER)
    assert empty.status_code == 200 and empty.context["result"] is None
    assert 'value="America/Los_Angeles"' in empty.content.decode()  # the default location's time zone
    bad = admin_client.get(TESTER, form_params(to_number="12", timezone="Mars/Olympus"))
    assert bad.context["result"] is None
    assert set(bad.context["form"].errors) == {"to_number", "timezone"}


@pytest.mark.django_db
def test_tester_needs_permission_to_view_rules(client, setup):
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(TESTER).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_routingrule"))
    assert client.get(TESTER).status_code == 200


@pytest.mark.django_db
def test_rule_changelist_links_the_tester_and_edits_priority_inline(admin_client, setup):
    url = reverse("admin:integrations_routingrule_changelist")
    page = admin_client.get(url)
    assert TESTER in page.content.decode()
    assert "any tag vip" in page.content.decode() and "always (catch-all)" not in page.content.decode()
    rules = list(RoutingRule.objects.order_by("priority"))
    form = {
        "form-TOTAL_FORMS": "2",
        "form-INITIAL_FORMS": "2",
        "_save": "Save",
        "form-0-id": rules[0].pk,
        "form-0-priority": "30",
        "form-0-enabled": "on",
        "form-1-id": rules[1].pk,
        "form-1-priority": "20",
    }
    assert admin_client.post(url, form).status_code == 302
    rules[0].refresh_from_db(), rules[1].refresh_from_db()
    assert (rules[0].priority, rules[0].enabled, rules[1].enabled) == (30, True, False)


@pytest.mark.django_db
def test_rule_add_form_takes_one_value_per_line_and_day_checkboxes(admin_client, setup):
    form = {
        "name": "Spam",
        "priority": "1",
        "enabled": "on",
        "channel": "any",
        "caller_numbers": "(415) 555-0666\n+1 415 555 0667, +14155550668",
        "caller_prefixes": "+1 900",
        "dialled_numbers": "",
        "tags_any": "",
        "tags_all": "",
        "contact_status": "any",
        "days": ["5", "6"],
        "start_time": "",
        "end_time": "",
        "timezone": "",
        "action": "reject",
        "dynamic_variables": "{}",
        "metadata": "{}",
    }
    response = admin_client.post(reverse("admin:integrations_routingrule_add"), form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule = RoutingRule.objects.get(name="Spam")
    assert rule.caller_numbers == ["+14155550666", "+14155550667", "+14155550668"]
    assert rule.caller_prefixes == ["+1900"] and rule.days == [5, 6] and rule.is_reject
    edit = admin_client.get(reverse("admin:integrations_routingrule_change", args=[rule.pk]))
    assert "+14155550666\n+14155550667" in edit.content.decode()

    invalid = admin_client.post(
        reverse("admin:integrations_routingrule_add"), {**form, "name": "Bad", "caller_numbers": "call me"}
    )
    assert invalid.status_code == 200 and "Not phone numbers: call me" in invalid.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model, query", [("phonenumber", "9999"), ("routingrule", "VIP"), ("routingdecision", "4155550123")]
)
def test_routing_models_are_browsable_and_searchable(admin_client, setup, model, query):
    RoutingDecision.objects.create(
        event="call_inbound",
        from_number=CALLER,
        to_number=DIALLED,
        lookup="found",
        answer={"call_inbound": {}},
        elapsed_ms=3.2,
        rule_name="After hours",
    )
    app = "calls" if model == "routingdecision" else "integrations"
    changelist = reverse(f"admin:{app}_{model}_changelist")
    assert admin_client.get(changelist).status_code == 200
    found = admin_client.get(changelist, {"q": query})
    assert found.status_code == 200 and found.context["cl"].result_count == 1


@pytest.mark.django_db
def test_a_call_page_shows_its_routing_decision(admin_client, setup):
    call = Call.objects.create(call_id="call_abc")
    decision = RoutingDecision.objects.create(
        event="call_inbound",
        from_number=CALLER,
        to_number=DIALLED,
        lookup="found",
        answer={"call_inbound": {"override_agent_id": "agent_vip"}},
        elapsed_ms=3.2,
        rule_name="VIP",
        call=call,
    )
    page = admin_client.get(reverse("admin:calls_call_change", args=[call.pk]))
    assert page.status_code == 200 and "VIP" in page.content.decode()
    detail = admin_client.get(reverse("admin:calls_routingdecision_change", args=[decision.pk]))
    assert "&quot;override_agent_id&quot;: &quot;agent_vip&quot;" in detail.content.decode()
