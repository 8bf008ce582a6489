"""Property-based abuse of every public endpoint (hypothesis).

Whatever arrives, for every endpoint in ENDPOINTS:
- never a 5xx (the database and the queue are up here; vendors answer with refused connections);
- every 4xx is JSON with a string `error` and `message`;
- an unauthenticated request stores nothing (no call, event, routing decision, tool invocation,
  outbound request or schedule);
- an authenticated request of the right shape, whatever its field values, is recorded: nothing lost.

Inputs: random JSON (nested), the endpoint's real payload with a field deleted or replaced by a value of
another type, huge strings, any unicode (NUL and lone surrogates included, escaped as JSON allows), bytes
that are not UTF-8, truncated JSON, other HTTP methods; and for authentication: no signature or secret,
junk, a wrong key, a stale or future timestamp, a signature of another body (replayed).

The MCP server (`/api/mcp`) answers past its token gate in JSON-RPC: there a 4xx carries a JSON-RPC
error object (`{"jsonrpc", "id", "error": {"code", "message"}}`) instead of `{"error", "message"}`.
The catch-all `/api/<anything>` is fuzzed as a public endpoint.

Adding an endpoint is one entry in ENDPOINTS (plus an `Auth` if it authenticates in a new way).
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django_q.models import Schedule
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from calls.models import Call, CallEvent, RoutingDecision, ToolInvocation
from integrations.models import McpToken, OutboundCallRequest, OutboundCampaign
from integrations.signatures import sign_retell_body
from retellghl.api import parse_json_body
from tests.conftest import fixture_json
from tests.mcp.support import make_token
from tests.real_sockets import closed_port_url
from tests.tools.support import make_tool

SIGNATURE = "HTTP_X_RETELL_SIGNATURE"
SECRET = "HTTP_X_WEBHOOK_SECRET"
BEARER = "HTTP_AUTHORIZATION"
STORED = [Call, CallEvent, RoutingDecision, ToolInvocation, OutboundCallRequest, Schedule]
# Sized so the whole module runs in well under a minute on two cores.
FUZZ = hypothesis_settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# --- Values --------------------------------------------------------------------------------------

NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",  # a lone high surrogate: only expressible in JSON as an escape
    "x\udfffy",
    "\ufeff",
    "\u202egnp.exe",
    "🦷🦷",
    "Dana \u00e9\u0301",
    "'; DROP TABLE calls_call; --",
    "{{ contact.firstName }}",
    "../../etc/passwd",
    "%00%2F",
]
nasty_text = st.one_of(
    st.text(max_size=60),
    st.sampled_from(NASTY_STRINGS),
    st.builds(
        lambda piece, times: piece * times, st.sampled_from(["a", "é", "🦷", "\x00"]), st.integers(1, 60_000)
    ),
)


def json_trees(floats):
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), floats, nasty_text)
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
        ),
        max_leaves=12,
    )


json_values = json_trees(st.floats())  # NaN and ±Infinity too: Python writes them; JSON has no such thing
strict_json_values = json_trees(st.floats(allow_nan=False, allow_infinity=False))
PHONES = ["+14155550123", "+14155550142", "(415) 555-0199", "+442071838750", "+61 2 9374 4000"]


def encode(value, *, ascii_only=True):
    """JSON bytes. ASCII mode escapes NUL and lone surrogates (\\u0000, \\ud800) as JSON allows; raw mode
    writes them out, so lone surrogates become bytes that are not UTF-8."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def mutated(draw, sample):
    """The endpoint's real payload, with one known field deleted, retyped or filled with a nasty string."""
    payload = json.loads(json.dumps(sample))
    paths = list(_paths(payload))
    path = draw(st.sampled_from(paths))
    parent = payload
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["delete", "retype", "nasty"]))
    if action == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values if action == "retype" else nasty_text)
    return payload


def _paths(value, prefix=()):
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))


def bodies(sample):
    """Anything at all, from plausible to hostile, as raw bytes."""
    structured = st.one_of(json_values, mutated(sample)) if sample is not None else json_values
    return st.one_of(
        st.builds(encode, structured, ascii_only=st.booleans()),
        st.binary(max_size=300),  # mostly not UTF-8
        st.builds(lambda raw, cut: raw[:cut], st.just(encode(sample)), st.integers(0, 400)),  # truncated
        st.builds(lambda raw, junk: raw + junk, st.just(encode(sample)), st.binary(min_size=1, max_size=8)),
        st.integers(1, 200_000).map(lambda depth: b"[" * depth + b"]" * depth),  # nested past any parser
    )


# --- Authentication ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Auth:
    """How a caller proves who it is: headers for a body, genuine or forged."""

    genuine: Callable[[bytes, dict], dict]  # (body, world) -> request headers/extra
    forged: st.SearchStrategy  # strategy of (body, world) -> request headers/extra


def _sign(body, key=None, timestamp_ms=None):
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("latin-1")  # no signature can match a non-UTF-8 body: any will do
    return sign_retell_body(text, key or django_settings.RETELL_API_KEY, timestamp_ms)


RETELL_SIGNATURE = Auth(
    genuine=lambda body, world: {SIGNATURE: _sign(body)},
    forged=st.one_of(
        st.just(lambda body, world: {}),  # absent
        st.text(max_size=120).map(lambda junk: lambda body, world: {SIGNATURE: junk}),  # malformed
        st.just(lambda body, world: {SIGNATURE: _sign(body, key="key_someone_elses")}),  # wrong key
        st.integers(301, 10**7).map(  # stale, or from the future
            lambda skew: lambda body, world: {SIGNATURE: _sign(body, timestamp_ms=_now_ms() - skew * 1000)}
        ),
        st.integers(301, 10**7).map(
            lambda skew: lambda body, world: {SIGNATURE: _sign(body, timestamp_ms=_now_ms() + skew * 1000)}
        ),
        st.binary(min_size=1, max_size=20).map(  # replayed: a genuine signature of another body
            lambda other: lambda body, world: {SIGNATURE: _sign(body + other)}
        ),
    ),
)
CAMPAIGN_SECRET = Auth(
    genuine=lambda body, world: {SECRET: world["secret"]},
    forged=st.one_of(
        st.just(lambda body, world: {}),
        st.text(max_size=80).map(lambda junk: lambda body, world: {SECRET: junk}),
        st.just(lambda body, world: {SECRET: world["other_secret"]}),  # another campaign's secret
        st.just(lambda body, world: {SECRET: world["secret"][:-1]}),
    ),
)
MCP_BEARER = Auth(
    genuine=lambda body, world: {BEARER: f"Bearer {world['mcp_secret']}"},
    forged=st.one_of(
        st.just(lambda body, world: {}),
        st.text(max_size=80).map(lambda junk: lambda body, world: {BEARER: f"Bearer {junk}"}),
        st.text(max_size=80).map(lambda junk: lambda body, world: {BEARER: junk}),
        st.just(lambda body, world: {BEARER: f"Bearer {world['mcp_disabled_secret']}"}),  # a disabled token
        st.just(lambda body, world: {BEARER: f"Bearer {world['mcp_secret'][:-1]}"}),
        st.just(lambda body, world: {BEARER: f"Basic {world['mcp_secret']}"}),  # the wrong scheme
    ),
)
PUBLIC = Auth(genuine=lambda body, world: {}, forged=st.nothing())


def _now_ms():
    return int(time.time() * 1000)


# --- Valid-shaped payloads (authenticated: these must all be recorded) -------------------------------

RETELL_EVENTS = [
    "call_started",
    "call_ended",
    "call_analyzed",
    "transcript_updated",
    "transfer_started",
    "x_new",
]
call_ids = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=128).filter(
    lambda text: text.strip()
)


@st.composite
def wild_fields(draw, base, keys):
    """`base` with some of `keys` (and maybe an unknown key) set to arbitrary values."""
    data = dict(base)
    for key in draw(st.sets(st.sampled_from(keys), max_size=4)):
        data[key] = draw(strict_json_values)
    if draw(st.booleans()):
        data[draw(st.text(max_size=20))] = draw(strict_json_values)
    return data


CALL_FIELDS = [
    "agent_id", "agent_version", "call_type", "call_status", "direction", "from_number", "to_number",
    "start_timestamp", "end_timestamp", "duration_ms", "disconnection_reason", "transcript",
    "transcript_object", "transcript_with_tool_calls", "call_analysis", "recording_url", "metadata",
    "retell_llm_dynamic_variables", "collected_dynamic_variables", "call_cost",
]  # fmt: skip


@st.composite
def retell_events(draw):
    call = draw(wild_fields(fixture_json("retell_call_analyzed")["call"], CALL_FIELDS))
    call["call_id"] = draw(call_ids)
    return {"event": draw(st.sampled_from(RETELL_EVENTS)), "call": call}


@st.composite
def inbound_requests(draw):
    event = draw(st.sampled_from(["call_inbound", "chat_inbound"]))
    details = draw(
        wild_fields(
            fixture_json("retell_call_inbound")["call_inbound"],
            ["agent_id", "agent_version", "custom_sip_headers"],
        )
    )
    details["from_number"] = draw(st.sampled_from(PHONES) | nasty_text.filter(lambda t: t.strip()))
    details["to_number"] = draw(st.sampled_from(PHONES))
    return {"event": event, "event_timestamp": draw(strict_json_values), event: details}


@st.composite
def function_calls(draw):
    body = fixture_json("retell_custom_function")
    body["args"] = draw(
        st.dictionaries(
            st.sampled_from(["date", "end_date", "time_of_day", "timezone"]) | st.text(max_size=10),
            strict_json_values,
            max_size=5,
        )
    )
    body["call"] = draw(
        wild_fields(body["call"], ["from_number", "direction", "retell_llm_dynamic_variables", "transcript"])
    )
    body["call"]["call_id"] = draw(call_ids)
    return body


@st.composite
def workflow_webhooks(draw):
    payload = draw(
        wild_fields(
            fixture_json("ghl_workflow_webhook"),
            ["first_name", "last_name", "full_name", "email", "tags", "contact_type"],
        )
    )
    payload["phone"] = draw(st.sampled_from(PHONES))
    payload["contact_id"] = draw(nasty_text.filter(lambda text: len(text.strip()) <= 64))
    payload["customData"] = draw(st.dictionaries(st.text(max_size=20), strict_json_values, max_size=4))
    return payload


@st.composite
def mcp_tool_calls(draw):
    """A JSON-RPC tools/call of check_availability, whatever its id and arguments."""
    return {
        "jsonrpc": "2.0",
        "id": draw(st.integers(-(2**53), 2**53) | st.text(max_size=40)),
        "method": "tools/call",
        "params": {
            "name": "check_availability",
            "arguments": draw(
                st.dictionaries(
                    st.sampled_from(["date", "end_date", "time_of_day", "timezone"]) | st.text(max_size=10),
                    strict_json_values,
                    max_size=5,
                )
            ),
        },
    }


MCP_SAMPLE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "check_availability", "arguments": {"date": "2025-11-03", "time_of_day": "morning"}},
}


def retell_event_recorded(payload, response):
    return (
        response.status_code == 204
        and CallEvent.objects.filter(retell_call_id=payload["call"]["call_id"]).exists()
    )


def inbound_recorded(payload, response):
    return (
        response.status_code == 200
        and RoutingDecision.objects.filter(
            pk=response.json()[payload["event"]]["metadata"]["routing_decision_id"]
        ).exists()
    )


def function_recorded(payload, response):
    return (
        response.status_code == 200
        and ToolInvocation.objects.filter(call_id=payload["call"]["call_id"].strip()).exists()
    )


def outbound_recorded(payload, response):
    return (
        response.status_code in (200, 201, 202, 409, 502)
        and OutboundCallRequest.objects.filter(pk=response.json()["request_id"]).exists()
    )


def mcp_tool_call_recorded(payload, response):
    """A result (isError or not) for this request's id, and the invocation logged with its answer."""
    if response.status_code != 200:
        return False
    answer = response.json()
    sent_id = parse_json_body(encode({"id": payload["id"]}))["id"]  # NUL and lone surrogates become U+FFFD
    if answer.get("id") != sent_id or "result" not in answer:
        return False
    latest = ToolInvocation.objects.filter(source="mcp").order_by("-pk").first()
    return latest is not None and latest.result == answer["result"]["structuredContent"]


# --- The endpoints -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    auth: Auth
    sample: dict | None  # a real payload, mutated into invalid ones; None: the endpoint takes no body
    valid: st.SearchStrategy | None = None  # valid-shaped payloads, whatever their field values
    recorded: Callable | None = None  # (payload, response) -> the request left its record
    methods: tuple = ("POST",)
    max_body: int = 25 * 1024 * 1024  # the endpoint's documented bound (413 past it)
    jsonrpc: bool = False  # past authentication, errors are JSON-RPC error objects (MCP)


ENDPOINTS = [
    Endpoint("retell events", "/api/webhooks/retell", RETELL_SIGNATURE, fixture_json("retell_call_ended"), retell_events(), retell_event_recorded),  # noqa: E501
    Endpoint("inbound", "/api/webhooks/inbound", RETELL_SIGNATURE, fixture_json("retell_call_inbound"), inbound_requests(), inbound_recorded),  # noqa: E501
    Endpoint("custom function", "/api/functions/check_availability", RETELL_SIGNATURE, fixture_json("retell_custom_function"), function_calls(), function_recorded),  # noqa: E501
    Endpoint("ghl outbound", "/api/webhooks/ghl/outbound/fuzz", CAMPAIGN_SECRET, fixture_json("ghl_workflow_webhook"), workflow_webhooks(), outbound_recorded, max_body=1024 * 1024),  # noqa: E501
    Endpoint("mcp", "/api/mcp", MCP_BEARER, MCP_SAMPLE, mcp_tool_calls(), mcp_tool_call_recorded, max_body=1024 * 1024, jsonrpc=True),  # noqa: E501
    Endpoint("healthz", "/healthz", PUBLIC, None, methods=("GET",)),
    Endpoint("unknown api path", "/api/webhooks/nope", PUBLIC, None, methods=("POST", "GET")),
]  # fmt: skip
ALL = pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[endpoint.name for endpoint in ENDPOINTS])
AUTHENTICATED = [endpoint for endpoint in ENDPOINTS if endpoint.auth is not PUBLIC]
RECORDING = [endpoint for endpoint in ENDPOINTS if endpoint.valid is not None]


@pytest.fixture
def world(db, settings, agent):
    """The configuration the endpoints serve, and vendors that refuse every connection (fast, no network)."""
    settings.GHL_BASE_URL = closed_port_url()
    settings.RETELL_BASE_URL = closed_port_url()
    cache.clear()
    make_tool("check_availability", config={"calendar_id": "cal_Cleanings01"}, expose_over_mcp=True)
    _, mcp_secret = make_token("Fuzz", agent.location)
    _, mcp_disabled_secret = make_token("Fuzz (disabled)", agent.location, enabled=False)
    campaign = OutboundCampaign(
        slug="fuzz", name="Fuzz", agent=agent, location=agent.location, from_number="+14155550100"
    )
    secret = campaign.set_new_secret()
    campaign.save()
    other = OutboundCampaign(
        slug="other", name="Other", agent=agent, location=agent.location, from_number="+14155550100"
    )
    other_secret = other.set_new_secret()
    other.save()
    return {
        "secret": secret,
        "other_secret": other_secret,
        "mcp_secret": mcp_secret,
        "mcp_disabled_secret": mcp_disabled_secret,
    }


def counts():
    stored = {model.__name__: model.objects.count() for model in STORED}
    # An MCP token is stamped when used: a refused request must not touch any.
    stored["McpToken used"] = McpToken.objects.filter(last_used_at__isnull=False).count()
    return stored


def send(client, endpoint, method, body, headers):
    return client.generic(method, endpoint.path, data=body, content_type="application/json", **headers)


def assert_well_formed(response, *, jsonrpc=False):
    """Never a 5xx; every 4xx is a JSON error with a code and a message (for MCP: our gate's, or a
    JSON-RPC error object)."""
    assert response.status_code < 500, (response.status_code, response.content[:500])
    if 400 <= response.status_code < 500:
        assert response["Content-Type"].startswith("application/json"), response.content[:200]
        body = json.loads(response.content)
        if jsonrpc and isinstance(body.get("error"), dict):
            assert body.get("jsonrpc") == "2.0" and isinstance(body["error"].get("code"), int)
            assert isinstance(body["error"].get("message"), str) and body["error"]["message"]
            return
        assert isinstance(body.get("error"), str) and body["error"]
        assert isinstance(body.get("message"), str) and body["message"]


# --- Properties ----------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", AUTHENTICATED, ids=[endpoint.name for endpoint in AUTHENTICATED])
@FUZZ
@given(data=st.data())
def test_unauthenticated_requests_get_a_json_4xx_and_store_nothing(client, world, endpoint, data):
    body = data.draw(bodies(endpoint.sample), label="body")
    forge = data.draw(endpoint.auth.forged, label="credentials")
    method = data.draw(
        st.sampled_from([*endpoint.methods, *endpoint.methods, "GET", "PUT", "DELETE"]), label="method"
    )
    before = counts()

    response = send(client, endpoint, method, body, forge(body, world))

    assert_well_formed(response, jsonrpc=endpoint.jsonrpc)
    assert 400 <= response.status_code < 500
    assert counts() == before


@ALL
@FUZZ
@given(data=st.data())
def test_authenticated_garbage_is_never_a_5xx_and_every_4xx_is_json(client, world, endpoint, data):
    body = data.draw(bodies(endpoint.sample), label="body")
    method = data.draw(
        st.sampled_from([*endpoint.methods, *endpoint.methods, "GET", "PUT", "PATCH", "DELETE"]),
        label="method",
    )

    response = send(client, endpoint, method, body, endpoint.auth.genuine(body, world))

    assert_well_formed(response, jsonrpc=endpoint.jsonrpc)


@pytest.mark.django_db
@FUZZ
@given(name=st.text(max_size=80))
def test_any_tool_name_in_the_url_gets_a_json_answer(client, world, name):
    from urllib.parse import quote

    body = encode(fixture_json("retell_custom_function"))
    response = client.post(
        f"/api/functions/{quote(name, safe='')}",
        data=body,
        content_type="application/json",
        **RETELL_SIGNATURE.genuine(body, world),
    )
    assert_well_formed(response)
    assert response.status_code in (200, 404)
    assert not ToolInvocation.objects.exclude(tool_name="check_availability").exists()


@pytest.mark.parametrize("endpoint", RECORDING, ids=[endpoint.name for endpoint in RECORDING])
@FUZZ
@given(data=st.data())
def test_authenticated_requests_of_the_right_shape_are_never_lost(client, world, endpoint, data):
    payload = data.draw(endpoint.valid, label="payload")
    body = encode(payload)  # NUL and lone surrogates escaped, as any JSON encoder writes them
    if data.draw(st.booleans(), label="raw UTF-8"):
        try:
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate has no UTF-8 form: only the escaped body could have been signed
    assume(len(body) <= endpoint.max_body)  # bigger is refused with a 413, by design

    response = send(client, endpoint, "POST", body, endpoint.auth.genuine(body, world))

    assert_well_formed(response, jsonrpc=endpoint.jsonrpc)
    assert endpoint.recorded(payload, response), (response.status_code, response.content[:300])
