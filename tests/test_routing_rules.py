"""Routing rules: the pure decision (`decide_route`), time windows, templates and rule validation."""

import json
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.models import Agent, GhlLocation, RoutingRule
from integrations.routing import (
    TemplateError,
    as_variable,
    check_template,
    decide_route,
    in_time_window,
    render_template,
    template_context,
)

NEW_YORK = ZoneInfo("America/New_York")
CALLER = "+14155550123"
DIALLED = "+14155559999"
DANA = {
    "id": "c_Dana7Lee01",
    "firstName": "Dana",
    "lastName": "Lee",
    "name": "Dana Lee",
    "email": "dana.lee@example.com",
    "tags": ["patient", "vip"],
    "customFields": [{"id": "cf_LastOutcome", "value": "booked"}, {"id": "cf_Plan", "value": ["gold", "x"]}],
}


def rule(pk=1, **fields):
    """An unsaved rule: the decision is pure, it needs no database."""
    fields.setdefault("name", f"rule {pk}")
    made = RoutingRule(**fields)
    made.pk = made.id = pk
    return made


def decide(rules, *, contact=DANA, now=None, **kwargs):
    now = now or datetime(2026, 12, 7, 15, 0, tzinfo=UTC)  # a Monday
    kwargs.setdefault("caller", CALLER)
    caller = kwargs.pop("caller")
    return decide_route(caller, DIALLED, contact, now, rules, **kwargs)


def variables(decision, event="call_inbound"):
    return decision.answer[event]["dynamic_variables"]


# --- First match wins --------------------------------------------------------------------------------


def test_first_match_by_priority_wins_and_the_skipped_rules_say_why():
    vip = Agent(pk=10, retell_agent_id="agent_vip", name="VIP", retell_agent_version=7)
    rules = [
        rule(3, priority=50, name="catch-all"),
        rule(1, priority=10, name="blocked", caller_numbers=["+19995550000"], action="reject"),
        rule(2, priority=20, name="vip", tags_any=["VIP"], agent=vip),
    ]
    decision = decide(rules)
    assert decision.rule.name == "vip"
    assert [(skipped.name, reason) for skipped, reason in decision.skipped] == [
        ("blocked", "caller not in the list")
    ]
    body = decision.answer["call_inbound"]
    assert body["override_agent_id"] == "agent_vip"
    assert body["override_agent_version"] == 7  # the agent's pinned version when the rule names none


def test_equal_priorities_keep_creation_order():
    decision = decide([rule(2, priority=5, name="second"), rule(1, priority=5, name="first")])
    assert decision.rule.name == "first"


def test_disabled_rules_never_match():
    decision = decide([rule(1, enabled=False, name="off"), rule(2, name="on")])
    assert decision.rule.name == "on"
    assert decision.skipped[0][1] == "disabled"


def test_no_rule_means_default_route_without_override():
    decision = decide([rule(1, tags_all=["vip", "gold"])])
    body = decision.answer["call_inbound"]
    assert decision.rule is None
    assert "override_agent_id" not in body and "reject" not in body
    assert body["metadata"]["routing_rule"] is None
    assert variables(decision)["customer_name"] == "Dana Lee"  # the agent still greets by name


def test_default_agent_is_the_route_when_nothing_matches_or_the_rule_names_no_agent():
    default = Agent(pk=11, retell_agent_id="agent_main", name="Main")
    nothing = decide([], default_agent=default)
    assert nothing.answer["call_inbound"]["override_agent_id"] == "agent_main"
    assert "override_agent_version" not in nothing.answer["call_inbound"]
    variables_only = decide([rule(1, dynamic_variables={"vip_tier": "gold"})], default_agent=default)
    assert variables_only.answer["call_inbound"]["override_agent_id"] == "agent_main"
    assert variables(variables_only)["vip_tier"] == "gold"


def test_rule_version_beats_the_agents_pinned_version():
    vip = Agent(pk=10, retell_agent_id="agent_vip", name="VIP", retell_agent_version=7)
    decision = decide([rule(1, agent=vip, agent_version=3)])
    assert decision.answer["call_inbound"]["override_agent_version"] == 3


def test_reject_answers_only_reject():
    decision = decide([rule(1, caller_numbers=[CALLER], action="reject")], event="chat_inbound")
    assert decision.answer == {"chat_inbound": {"reject": True}}
    assert decision.rejected


# --- Conditions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, matches",
    [
        ({"caller_prefixes": ["+1415"]}, True),
        ({"caller_prefixes": ["+1900", "+44"]}, False),
        ({"dialled_numbers": [DIALLED]}, True),
        ({"dialled_numbers": ["+14155550000"]}, False),
        ({"tags_any": ["gold", "vip"]}, True),
        ({"tags_any": ["gold"]}, False),
        ({"tags_all": ["vip", "Patient"]}, True),
        ({"tags_all": ["vip", "gold"]}, False),
        ({"contact_status": "found"}, True),
        ({"contact_status": "not_found"}, False),
        ({"custom_field_id": "cf_LastOutcome", "custom_field_value": "BOOKED"}, True),
        ({"custom_field_id": "cf_LastOutcome", "custom_field_value": "no-show"}, False),
        ({"custom_field_id": "cf_Plan", "custom_field_value": "gold"}, True),  # any item of a multi-select
        ({"custom_field_id": "cf_Missing", "custom_field_value": ""}, False),
        ({"channel": "call"}, True),
        ({"channel": "chat"}, False),
    ],
)
def test_each_condition(fields, matches):
    assert (decide([rule(1, **fields)]).rule is not None) is matches


def test_all_set_conditions_must_hold():
    assert decide([rule(1, tags_any=["vip"], caller_prefixes=["+44"])]).rule is None
    assert decide([rule(1, tags_any=["vip"], caller_prefixes=["+1"])]).rule is not None


def test_unknown_caller_matches_not_found_rules_only():
    found = rule(1, contact_status="found", name="known")
    unknown = rule(2, contact_status="not_found", name="intake")
    assert decide([found, unknown], contact=None).rule.name == "intake"


def test_withheld_caller_matches_no_caller_condition():
    decision = decide([rule(1, caller_prefixes=["+1"]), rule(2, name="rest")], caller=None, contact=None)
    assert decision.rule.name == "rest"
    assert variables(decision)["caller_number"] == ""


def test_failed_lookup_skips_contact_rules_but_applies_the_others():
    vip = rule(1, tags_any=["vip"], name="vip")
    not_found = rule(2, contact_status="not_found", name="intake")
    blocked = rule(3, caller_numbers=[CALLER], action="reject", name="blocked")
    decision = decide([vip, not_found, blocked], contact=None, contact_known=False)
    assert decision.rule.name == "blocked"
    assert {reason for _, reason in decision.skipped} == {"needs the GHL contact, and the lookup failed"}
    body = decide([vip], contact=None, contact_known=False).answer["call_inbound"]
    assert body["dynamic_variables"]["contact_found"] == "unknown"
    assert body["metadata"]["contact_found"] is None


def test_location_scope():
    here, there = GhlLocation(pk=1, location_id="loc_here"), GhlLocation(pk=2, location_id="loc_there")
    scoped = rule(1, location=there, name="there only")
    assert decide([scoped], location=here).rule is None
    assert decide([scoped], location=there).rule.name == "there only"
    assert decide([scoped], location=None).rule is None


def test_chat_rules_do_not_route_calls():
    decision = decide([rule(1, channel="chat")], event="call_inbound")
    assert decision.rule is None and decision.skipped[0][1] == "sms chats only"


# --- Time windows ------------------------------------------------------------------------------------

BUSINESS_HOURS = {"days": [0, 1, 2, 3, 4], "start_time": time(9), "end_time": time(17)}
AFTER_HOURS = {"start_time": time(18), "end_time": time(8)}


def at(year, month, day, hour, minute=0, zone=NEW_YORK):
    return datetime(year, month, day, hour, minute, tzinfo=zone)


@pytest.mark.parametrize(
    "when, inside",
    [
        (at(2026, 12, 7, 9, 0), True),  # Monday opening, inclusive
        (at(2026, 12, 7, 16, 59), True),
        (at(2026, 12, 7, 17, 0), False),  # end is exclusive
        (at(2026, 12, 6, 12, 0), False),  # Sunday
        (datetime(2026, 12, 7, 14, 30, tzinfo=UTC), True),  # 09:30 EST
        (datetime(2026, 12, 7, 13, 30, tzinfo=UTC), False),  # 08:30 EST
        (datetime(2026, 7, 6, 13, 30, tzinfo=UTC), True),  # 09:30 EDT: the zone's DST applies
    ],
)
def test_business_hours_in_the_rules_timezone(when, inside):
    assert in_time_window(rule(1, timezone="America/New_York", **BUSINESS_HOURS), when, "UTC") is inside


@pytest.mark.parametrize(
    "when, inside",
    [
        (at(2026, 12, 4, 21, 0), True),  # Friday 21:00
        (at(2026, 12, 5, 2, 0), True),  # Saturday 02:00 belongs to Friday's window
        (at(2026, 12, 5, 8, 0), False),  # end is exclusive
        (at(2026, 12, 5, 12, 0), False),
        (at(2026, 12, 5, 19, 0), False),  # Saturday evening: the window does not start on Saturday
        (at(2026, 12, 7, 2, 0), False),  # Monday 02:00 belongs to Sunday
        (at(2026, 12, 8, 2, 0), True),  # Tuesday 02:00 belongs to Monday
    ],
)
def test_overnight_window_belongs_to_the_day_it_starts(when, inside):
    weeknights = rule(1, days=[0, 1, 2, 3, 4], timezone="America/New_York", **AFTER_HOURS)
    assert in_time_window(weeknights, when, "UTC") is inside


def test_days_without_hours_cover_the_whole_day():
    weekend = rule(1, days=[5, 6], timezone="America/New_York")
    assert in_time_window(weekend, at(2026, 12, 6, 23, 59), "UTC")
    assert not in_time_window(weekend, at(2026, 12, 7, 0, 0), "UTC")


def test_a_window_without_timezone_reads_the_locations():
    # Sunday 21:00 in Los Angeles is Monday 05:00 UTC.
    sunday_night = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
    la = GhlLocation(pk=1, location_id="loc", timezone="America/Los_Angeles")
    sundays = rule(1, days=[6])
    assert decide([sundays], now=sunday_night, location=la).rule is not None
    assert decide([sundays], now=sunday_night, location=None).rule is None  # UTC: Monday


def test_naive_time_is_refused():
    with pytest.raises(ValueError):
        decide([], now=datetime(2026, 12, 7, 9, 0))


# --- Variables ---------------------------------------------------------------------------------------


def test_base_variables_carry_the_contact():
    assert variables(decide([])) == {
        "contact_id": "c_Dana7Lee01",
        "customer_name": "Dana Lee",
        "first_name": "Dana",
        "last_name": "Lee",
        "email": "dana.lee@example.com",
        "contact_tags": "patient, vip",
        "timezone": "",
        "caller_number": CALLER,
        "contact_found": "true",
    }


def test_base_variables_for_an_unknown_caller_are_empty_strings():
    assert variables(decide([], contact=None)) == {
        "contact_id": "",
        "customer_name": "",
        "first_name": "",
        "last_name": "",
        "email": "",
        "contact_tags": "",
        "timezone": "",
        "caller_number": CALLER,
        "contact_found": "false",
    }


def test_templated_and_static_variables():
    templated = rule(
        1,
        dynamic_variables={
            "vip_tier": "gold",
            "greeting": "Hi {{ contact.firstName }}, last time: {{custom.cf_LastOutcome}}",
            "nickname": '{{ contact.nickname|default:"friend" }}',
            "plan": "{{ custom.cf_Plan }}",
            "line": "{{ call.to_number }}",
            "customer_name": '{{ contact.firstName|default:"there" }}',  # a rule may override a base one
        },
        metadata={"segment": "vip", "routing_rule": "spoofed"},
    )
    decision = decide([templated])
    assert variables(decision) == {
        **variables(decide([])),
        "vip_tier": "gold",
        "greeting": "Hi Dana, last time: booked",
        "nickname": "friend",
        "plan": "gold, x",
        "line": DIALLED,
        "customer_name": "Dana",
    }
    metadata = decision.answer["call_inbound"]["metadata"]
    assert metadata["segment"] == "vip"
    assert metadata["routing_rule"] == "rule 1"  # our keys win over the rule's metadata


def test_templates_render_missing_values_empty_and_odd_values_as_text():
    context = template_context(
        {"firstName": None, "score": 4.5, "dnd": False, "address": {"city": "Oslo"}},
        caller=None,
        dialled=None,
    )
    assert render_template("[{{contact.firstName}}]", context) == "[]"
    assert render_template("{{contact.score}} {{contact.dnd}}", context) == "4.5 false"
    assert render_template("{{ contact.address.city }}", context) == "Oslo"
    assert render_template("{{ contact.address }}", context) == '{"city": "Oslo"}'
    assert render_template("{{ call.from_number }}", context) == ""


@pytest.mark.parametrize(
    "bad", ["{{ settings.SECRET_KEY }}", "{{ contact.firstName|upper }}", "{% include 'x' %}{{ }}", "{{ 1 }}"]
)
def test_templates_only_read_contact_custom_and_call(bad):
    with pytest.raises(TemplateError):
        check_template(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
contacts = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "firstName": json_values,
        "lastName": json_values,
        "name": json_values,
        "email": json_values,
        "tags": json_values,
        "customFields": st.lists(st.fixed_dictionaries({"id": st.text(max_size=6), "value": json_values})),
    },
)
templates = st.sampled_from(
    [
        "{{ contact.firstName }}",
        "{{contact.tags}}",
        '{{ contact.name|default:"x" }}',
        "{{ custom.a }}",
        "{{ contact.customFields }}",
        "plain",
        "",
    ]
) | st.text(max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    contact=contacts,
    rule_variables=st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), templates, max_size=4),
    known=st.booleans(),
    caller=st.none() | st.just(CALLER),
)
def test_every_dynamic_variable_value_is_a_string(contact, rule_variables, known, caller):
    """Retell rejects the whole answer when one variable is not a string: whatever GHL sends us."""
    decision = decide(
        [rule(1, dynamic_variables=rule_variables)], contact=contact, contact_known=known, caller=caller
    )
    values = variables(decision)
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in values.items())
    json.dumps(decision.answer)  # and the whole answer is JSON


@given(json_values)
def test_as_variable_is_always_a_string(value):
    assert isinstance(as_variable(value), str)


# --- Validation (RoutingRule.clean) ------------------------------------------------------------------


def saved_rule_errors(**fields):
    fields.setdefault("name", "r")
    candidate = RoutingRule(**fields)
    with pytest.raises(ValidationError) as excinfo:
        candidate.full_clean()
    return excinfo.value.message_dict


@pytest.mark.django_db
def test_clean_normalises_numbers_prefixes_tags_and_days():
    candidate = RoutingRule(
        name="r",
        caller_numbers=["(415) 555-0123", "+14155550123"],
        dialled_numbers=["+1 415 555 9999"],
        caller_prefixes=["+1 (900)"],
        tags_any=[" vip ", "", "vip"],
        days=[4, 0, 4],
        start_time=time(18),
        end_time=time(8),
        timezone="Europe/Oslo",
    )
    candidate.full_clean()
    assert candidate.caller_numbers == ["+14155550123"]
    assert candidate.dialled_numbers == ["+14155559999"]
    assert candidate.caller_prefixes == ["+1900"]
    assert candidate.tags_any == ["vip"]
    assert candidate.days == [0, 4]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields, field",
    [
        ({"caller_numbers": ["not a number"]}, "caller_numbers"),
        ({"caller_prefixes": ["1900"]}, "caller_prefixes"),
        ({"days": [7]}, "days"),
        ({"days": ["mon"]}, "days"),
        ({"start_time": time(9)}, "end_time"),
        ({"start_time": time(9), "end_time": time(9)}, "end_time"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"custom_field_value": "booked"}, "custom_field_id"),
        ({"agent_version": 2}, "agent_version"),
        ({"dynamic_variables": {"tier": 3}}, "dynamic_variables"),
        ({"dynamic_variables": {"bad name": "x"}}, "dynamic_variables"),
        ({"dynamic_variables": {"hi": "{{ contact.firstName|upper }}"}}, "dynamic_variables"),
        ({"metadata": ["not", "an", "object"]}, "metadata"),
        ({"tags_any": "vip"}, "tags_any"),
    ],
)
def test_clean_rejects(fields, field):
    assert field in saved_rule_errors(**fields)


@pytest.mark.django_db
def test_a_rejecting_rule_routes_nowhere(agent):
    assert "agent" in saved_rule_errors(action="reject", agent=agent)
