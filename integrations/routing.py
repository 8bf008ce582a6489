"""Inbound call routing: who is calling, which operator rule applies, and what we answer Retell.

Retell posts `call_inbound` (or `chat_inbound` for SMS) while the caller hears ringing, so the answer
must come within a budget (settings.INBOUND_ROUTING_BUDGET_MS). Three layers:

- `decide_route`: the decision itself, pure. Given the caller, the dialled number, the GHL contact (or
  None), the time and the rules, it returns the matched rule and the exact answer. The webhook and the
  admin routing tester both come here, so what the tester shows is what a caller gets.
- `lookup_caller`: the GHL contact lookup, cached briefly and bounded by the budget. When GHL is slow
  or failing it gives up and says so; routing then fails open (rules that need the contact are
  skipped, the others still apply, e.g. a block list or after-hours).
- `route_inbound`: the service: resolve the dialled number's location, look the caller up, decide,
  record a `RoutingDecision`.
"""

import contextvars
import functools
import json
import logging
import re
import threading
import time
import uuid
import zoneinfo
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import requests
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, connections
from django.db.models import signals
from django.utils import timezone

from calls.models import RoutingDecision
from integrations.errors import NotConfigured, PermanentError, VendorError
from integrations.ghl import ghl_session
from integrations.models import Agent, GhlLocation, PhoneNumber, RoutingRule
from integrations.phones import to_e164, to_e164_or_none

logger = logging.getLogger(__name__)

INBOUND_EVENTS = ("call_inbound", "chat_inbound")
CHANNEL_OF_EVENT = {"call_inbound": RoutingRule.Channel.CALL, "chat_inbound": RoutingRule.Channel.CHAT}
Lookup = RoutingDecision.Lookup

# Kept back from the budget for everything after the GHL lookup: the rules, the decision row and the
# response. Measured at a few ms; the margin absorbs a slow database write.
_RESERVE_SECONDS = 0.1
# At most this many GHL lookups in flight per process. Beyond it, lookups wait in the pool's queue and
# the budget turns a long wait into a fail-open answer instead of a ringing caller.
_LOOKUP_THREADS = 8


# --- Templates for dynamic variables ------------------------------------------------------------------
#
# A deliberately tiny language: `{{ contact.firstName }}`, `{{ custom.<field id> }}`,
# `{{ call.from_number }}`, with one filter, `{{ contact.firstName|default:"there" }}`. Django's template
# engine would also work, but it offers tags (`{% include %}`, `{% debug %}`) an admin user has no
# business running inside a live call path; this one can only read the values we hand it.

TEMPLATE_ROOTS = ("contact", "custom", "call")
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_EXPRESSION = re.compile(
    r'\s*(?P<path>[A-Za-z_]\w*(?:\.[\w-]+)*)\s*(?:\|\s*default\s*:\s*"(?P<default>[^"]*)"\s*)?'
)
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TemplateError(ValueError):
    pass


def _parse_placeholder(inner):
    match = _EXPRESSION.fullmatch(inner)
    if not match:
        raise TemplateError(
            f"{{{{{inner}}}}} is not a placeholder: use {{{{ contact.firstName }}}} or "
            f'{{{{ contact.firstName|default:"there" }}}}'
        )
    path = match.group("path").split(".")
    if path[0] not in TEMPLATE_ROOTS:
        raise TemplateError(f"{{{{{inner}}}}}: start with one of {', '.join(TEMPLATE_ROOTS)}")
    return path, match.group("default")


def check_template(text):
    """Raise TemplateError when `text` has a placeholder `render_template` cannot read."""
    for match in _PLACEHOLDER.finditer(text):
        _parse_placeholder(match.group(1))


def render_template(text, context):
    """`text` with each placeholder replaced by its value as a string ("" when absent)."""

    def replace(match):
        try:
            path, default = _parse_placeholder(match.group(1))
        except TemplateError:
            return match.group(0)  # rules are checked on save; an old bad one renders literally
        value = context
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        rendered = as_variable(value)
        return rendered if rendered or default is None else default

    return _PLACEHOLDER.sub(replace, text)


def as_variable(value):
    """Any JSON value as a dynamic variable string: Retell refuses an answer holding a non-string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(as_variable(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def template_context(contact, *, caller, dialled):
    contact = contact if isinstance(contact, dict) else {}
    return {
        "contact": contact,
        "custom": _custom_fields(contact),
        "call": {"from_number": caller or "", "to_number": dialled or ""},
    }


def _custom_fields(contact):
    fields = contact.get("customFields") or []
    return {
        str(item["id"]): item.get("value")
        for item in fields
        if isinstance(item, dict) and item.get("id") is not None
    }


# --- Rule validation (RoutingRule.clean) -----------------------------------------------------------------

_PREFIX_SEPARATORS = re.compile(r"[\s().-]")
_PREFIX = re.compile(r"\+\d{1,15}")


def clean_rule(rule):
    """Validate and normalise what an operator typed into a rule; raise ValidationError by field.

    Runs after the field validators, which may already have rejected a value: skip those here.
    """
    errors = {}

    for name in ("dialled_numbers", "caller_numbers"):
        values = getattr(rule, name)
        if not isinstance(values, list):
            continue
        normalised, bad = [], []
        for value in values:
            number = to_e164_or_none(value)
            (normalised.append(number) if number else bad.append(str(value)))
        if bad:
            errors[name] = f"Not phone numbers: {', '.join(bad)}"
        else:
            setattr(rule, name, list(dict.fromkeys(normalised)))

    if isinstance(rule.caller_prefixes, list):
        prefixes = [_PREFIX_SEPARATORS.sub("", str(value)) for value in rule.caller_prefixes]
        bad = [value for value in prefixes if not _PREFIX.fullmatch(value)]
        if bad:
            errors["caller_prefixes"] = (
                f"Prefixes start with + and a country code, e.g. +1900: {', '.join(bad)}"
            )
        else:
            rule.caller_prefixes = list(dict.fromkeys(prefixes))

    for name in ("tags_any", "tags_all"):
        values = getattr(rule, name)
        if isinstance(values, list):
            setattr(rule, name, list(dict.fromkeys(str(tag).strip() for tag in values if str(tag).strip())))

    if not isinstance(rule.days, list) or not all(
        isinstance(day, int) and not isinstance(day, bool) and 0 <= day <= 6 for day in rule.days
    ):
        errors["days"] = "Days are numbers 0 (Monday) to 6 (Sunday)."
    else:
        rule.days = sorted(set(rule.days))

    if (rule.start_time is None) != (rule.end_time is None):
        errors["end_time"] = "Set both the start and the end of the time window, or neither."
    elif rule.start_time is not None and rule.start_time == rule.end_time:
        errors["end_time"] = (
            "The window would be empty (or the whole day): leave both times empty for all day."
        )

    if rule.custom_field_value and not rule.custom_field_id.strip():
        errors["custom_field_id"] = "Name the custom field whose value must match."
    rule.custom_field_id = rule.custom_field_id.strip()

    if rule.action == RoutingRule.Action.REJECT and rule.agent_id:
        errors["agent"] = "A rejected call is not routed: leave the agent empty."
    if rule.agent_version is not None and not rule.agent_id:
        errors["agent_version"] = "A version needs an agent."

    if isinstance(rule.dynamic_variables, dict):
        problems = []
        for name, template in rule.dynamic_variables.items():
            if not VARIABLE_NAME.fullmatch(str(name)):
                problems.append(f"{name!r} is not a variable name (letters, digits, _)")
            elif isinstance(template, str):
                try:
                    check_template(template)
                except TemplateError as exc:
                    problems.append(f"{name}: {exc}")
        if problems:
            errors["dynamic_variables"] = problems

    if errors:
        raise ValidationError(errors)


# --- The decision (pure) -------------------------------------------------------------------------------


@dataclass
class RouteDecision:
    """What `decide_route` chose. `answer` is the full JSON body for Retell."""

    rule: RoutingRule | None
    answer: dict
    # (rule, why it did not match) for every rule tried before the match: the tester shows it.
    skipped: list = field(default_factory=list)

    @property
    def rejected(self):
        return bool(self.rule and self.rule.is_reject)


def decide_route(
    caller,
    dialled,
    contact,
    now,
    rules,
    *,
    event="call_inbound",
    contact_known=True,
    location=None,
    default_agent=None,
):
    """Pick the first matching rule and build Retell's answer. No I/O.

    caller: the caller's E.164 number, or None when withheld or unparseable.
    dialled: our E.164 number. contact: the GHL contact dict, or None when not found.
    now: an aware datetime. rules: RoutingRule objects (agents preloaded), tried by (priority, id).
    contact_known: False when the GHL lookup failed: rules with contact conditions are then skipped.
    location: the dialled number's GhlLocation (rule scope, and the time zone of windows without one).
    default_agent: the route when no rule matches or the matching rule names no agent (None: no override).
    """
    if now.utcoffset() is None:
        raise ValueError("decide_route needs an aware datetime")
    channel = CHANNEL_OF_EVENT[event]
    default_timezone = (location.timezone if location else None) or settings.TIME_ZONE
    skipped = []
    matched = None
    for rule in sorted(rules, key=lambda rule: (rule.priority, rule.pk or 0)):
        reason = _mismatch(
            rule,
            caller=caller,
            dialled=dialled,
            contact=contact,
            contact_known=contact_known,
            now=now,
            channel=channel,
            location=location,
            default_timezone=default_timezone,
        )
        if reason is None:
            matched = rule
            break
        skipped.append((rule, reason))

    answer = _answer(
        event,
        rule=matched,
        caller=caller,
        dialled=dialled,
        contact=contact,
        contact_known=contact_known,
        location=location,
        default_agent=default_agent,
    )
    return RouteDecision(rule=matched, answer=answer, skipped=skipped)


def _mismatch(rule, *, caller, dialled, contact, contact_known, now, channel, location, default_timezone):
    """Why `rule` does not apply to this call, or None when it does. Conditions that are set must hold."""
    if not rule.enabled:
        return "disabled"
    if rule.location_id is not None and (location is None or rule.location_id != location.pk):
        return "scoped to another location"
    if rule.channel not in (RoutingRule.Channel.ANY, channel):
        return f"{rule.get_channel_display().lower()}"
    if rule.dialled_numbers and dialled not in rule.dialled_numbers:
        return "dialled number not in the list"
    if rule.caller_numbers and caller not in rule.caller_numbers:
        return "caller not in the list"
    if rule.caller_prefixes and not (caller and caller.startswith(tuple(rule.caller_prefixes))):
        return "caller does not start with a listed prefix"
    if rule.needs_contact:
        if not contact_known:
            return "needs the GHL contact, and the lookup failed"
        reason = _contact_mismatch(rule, contact)
        if reason:
            return reason
    if rule.has_time_window and not in_time_window(rule, now, default_timezone):
        return "outside the time window"
    return None


def _contact_mismatch(rule, contact):
    Status = RoutingRule.ContactStatus
    if rule.contact_status == Status.FOUND and contact is None:
        return "contact not found"
    if rule.contact_status == Status.NOT_FOUND and contact is not None:
        return "contact found"
    tags = {str(tag).strip().casefold() for tag in (contact or {}).get("tags") or []}
    # GHL stores tags lower-cased; compare case-insensitively so "VIP" in a rule still matches.
    if rule.tags_any and not tags & {tag.casefold() for tag in rule.tags_any}:
        return "contact has none of the tags"
    if rule.tags_all and not {tag.casefold() for tag in rule.tags_all} <= tags:
        return "contact lacks some of the tags"
    if rule.custom_field_id:
        value = _custom_fields(contact or {}).get(rule.custom_field_id)
        values = value if isinstance(value, list) else [value]
        wanted = rule.custom_field_value.strip().casefold()
        if not any(as_variable(item).strip().casefold() == wanted for item in values if item is not None):
            return "custom field does not match"
    return None


def in_time_window(rule, now, default_timezone):
    """Whether `now` falls in the rule's window, read in the rule's (or the location's) time zone.

    `days` are the days a window STARTS on: in an overnight window (18:00–08:00) Saturday 02:00 belongs
    to Friday's window. The end time is exclusive.
    """
    local = now.astimezone(zoneinfo.ZoneInfo(rule.timezone or default_timezone))
    days = set(rule.days) if rule.days else set(range(7))
    today, yesterday = local.weekday(), (local.weekday() - 1) % 7
    if rule.start_time is None:
        return today in days
    clock = local.time().replace(tzinfo=None)
    start, end = rule.start_time, rule.end_time
    if start < end:
        return today in days and start <= clock < end
    if clock >= start:
        return today in days
    return clock < end and yesterday in days


def base_variables(contact, *, caller, contact_known):
    """The variables every answer carries, so an agent prompt can always say `{{customer_name}}`.

    Retell leaves an unset variable as the literal `{{name}}` in the prompt; an empty string is better.
    """
    contact = contact or {}
    first, last = (contact.get("firstName") or ""), (contact.get("lastName") or "")
    name = contact.get("name") or contact.get("contactName") or f"{first} {last}".strip()
    if not contact_known:
        found = "unknown"
    else:
        found = "true" if contact.get("id") else "false"
    return {
        "contact_id": as_variable(contact.get("id")),
        "customer_name": as_variable(name),
        "first_name": as_variable(first),
        "last_name": as_variable(last),
        "email": as_variable(contact.get("email")),
        "contact_tags": as_variable(contact.get("tags") or []),
        # The contact's own IANA zone in GHL: in-call tools speak slot times in it (else the location's).
        "timezone": as_variable(contact.get("timezone")),
        "caller_number": caller or "",
        "contact_found": found,
    }


def _answer(event, *, rule, caller, dialled, contact, contact_known, location, default_agent):
    if rule is not None and rule.is_reject:
        return {event: {"reject": True}}

    body = {}
    agent, version = default_agent, None
    if rule is not None and rule.agent_id:
        agent, version = rule.agent, rule.agent_version
    if agent is not None:
        body["override_agent_id"] = agent.retell_agent_id
        version = version if version is not None else agent.retell_agent_version
        if version is not None:
            body["override_agent_version"] = version

    variables = base_variables(contact, caller=caller, contact_known=contact_known)
    if rule is not None:
        context = template_context(contact, caller=caller, dialled=dialled)
        for name, template in (rule.dynamic_variables or {}).items():
            variables[str(name)] = render_template(as_variable(template), context)
    body["dynamic_variables"] = variables

    # The rule's metadata first: our keys are what the post-call pipeline reads, so they win.
    metadata = dict(rule.metadata or {}) if rule is not None else {}
    metadata.update(
        {
            "routing_rule": rule.name if rule else None,
            "routing_rule_id": rule.pk if rule else None,
            "contact_found": (contact is not None) if contact_known else None,
            "ghl_contact_id": (contact or {}).get("id") or None,
            "ghl_location_id": location.location_id if location else None,
        }
    )
    body["metadata"] = metadata
    return {event: body}


# --- The GHL lookup (budgeted, cached, fail-open) -----------------------------------------------------


@dataclass(frozen=True)
class ContactLookup:
    status: str  # a RoutingDecision.Lookup value
    contact: dict | None = None
    error: str = ""
    from_cache: bool = False

    @property
    def label(self):
        return Lookup(self.status).label

    @property
    def known(self):
        """Whether routing may trust `contact` (None then means: there is no such contact)."""
        return self.status != Lookup.FAILED


_executor = None
_sessions = {}  # (GHL_SANDBOX, GHL_BASE_URL) → the session lookups share
_pool_lock = threading.Lock()


def _lookup_pool():
    """The lookup threads and the HTTP session they share, created on first use in each process.

    One session keeps connections to GHL alive between lookups: a new TLS handshake on every ringing
    call would spend a good part of the budget. The session is safe to share (the token travels in
    per-request headers) and its connection pool is sized to the number of threads. It comes from
    `ghl_session`, so with GHL_SANDBOX on the lookups are answered by the sandbox like every other
    GHL request; it is kept per sandbox setting, which tests switch at run time.
    """
    global _executor
    with _pool_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=_LOOKUP_THREADS, thread_name_prefix="inbound-ghl")
        key = (settings.GHL_SANDBOX, settings.GHL_BASE_URL)
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = ghl_session(settings.GHL_BASE_URL)
            # Mounted on the scheme only: a sandbox adapter mounted on GHL's URL stays the longer match.
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=_LOOKUP_THREADS)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        return _executor, session


def contact_cache_key(location, caller):
    return f"inbound:contact:v1:{location.location_id}:{caller}"


def forget_cached_contact(location, caller):
    """Drop a cached lookup, e.g. after creating the caller as a contact."""
    try:
        cache.delete(contact_cache_key(location, caller))
    except Exception:  # a cache outage must never break the caller of this helper
        logger.warning("inbound routing: cache delete failed", exc_info=True)


def lookup_caller(location, caller, *, deadline, use_cache=True):
    """The GHL contact with the caller's number, looked up before `deadline` (time.monotonic()).

    Never raises for GHL or cache trouble: returns a FAILED lookup with the reason instead.
    """
    if caller is None:
        return ContactLookup(Lookup.SKIPPED, error="caller number withheld or not a phone number")
    if location is None:
        return ContactLookup(Lookup.FAILED, error="no GHL location owns this number and none is the default")

    key = contact_cache_key(location, caller)
    if use_cache:
        try:
            cached = cache.get(key)
        except Exception:  # Redis down: look up in GHL as if the cache were empty
            logger.warning("inbound routing: cache read failed", exc_info=True)
            cached = None
        if isinstance(cached, dict):
            contact = cached.get("contact")
            return ContactLookup(Lookup.FOUND if contact else Lookup.NOT_FOUND, contact, from_cache=True)

    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return ContactLookup(Lookup.FAILED, error="routing budget spent before the GHL lookup")
    pool, session = _lookup_pool()
    try:
        client = location.client(live=True, session=session)
    except NotConfigured as exc:
        return ContactLookup(Lookup.FAILED, error=str(exc))
    # requests' timeouts are per socket operation; cap them by the budget so a thread we stop waiting
    # for does not linger, and enforce the total with the future's timeout below.
    client.timeout = tuple(min(part, remaining) for part in client.timeout)

    # In the caller's context, so the request's GHL stopwatch (Server-Timing) counts the lookup.
    future = pool.submit(contextvars.copy_context().run, _find_and_cache, client, caller, key)
    try:
        contact = future.result(timeout=remaining)
    except FutureTimeout:
        future.cancel()  # still queued behind other lookups: never send it
        budget = settings.INBOUND_ROUTING_BUDGET_MS
        return ContactLookup(Lookup.FAILED, error=f"GHL did not answer within the {budget} ms routing budget")
    except VendorError as exc:
        return ContactLookup(Lookup.FAILED, error=str(exc))
    except Exception as exc:  # a bug in the lookup must not cost the caller the rules that still apply
        logger.exception("inbound routing: contact lookup crashed")
        return ContactLookup(Lookup.FAILED, error=f"lookup failed: {type(exc).__name__}")
    return ContactLookup(Lookup.FOUND if contact else Lookup.NOT_FOUND, contact)


def _find_and_cache(client, caller, key):
    # Runs in a pool thread: HTTP and cache only, never the database (no connection to leak). The one
    # exception is the GHL sandbox, which answers from the database: close what it opened here, so
    # idle pool threads hold no connection.
    try:
        contact = client.find_contact_by_phone(caller)
    finally:
        if settings.GHL_SANDBOX:
            connections.close_all()
    if contact is not None and not isinstance(contact, dict):
        raise PermanentError("contact search answered something that is not a contact", vendor="GHL")
    # A lookup that finishes after we stopped waiting still warms the cache for the next call.
    ttl = (
        settings.INBOUND_CONTACT_CACHE_SECONDS
        if contact
        else settings.INBOUND_CONTACT_NOT_FOUND_CACHE_SECONDS
    )
    if ttl > 0:
        try:
            cache.set(key, {"contact": contact}, ttl)
        except Exception:
            logger.warning("inbound routing: cache write failed", exc_info=True)
    return contact


# --- The service --------------------------------------------------------------------------------------


@dataclass
class InboundRouting:
    """Everything known about one routing: what the webhook answers and what the tester shows."""

    event: str
    caller: str | None  # E.164, None when withheld / unparseable
    caller_raw: str
    dialled: str
    phone_number: PhoneNumber | None
    location: GhlLocation | None
    lookup: ContactLookup
    decision: RouteDecision
    elapsed_ms: float
    record: RoutingDecision | None = None

    @property
    def answer(self):
        return self.decision.answer


# --- The routing configuration, cached per process -----------------------------------------------------
#
# Numbers, agents, locations and rules are read on every ringing call but change only when an operator
# edits them. Loading them took two ORM queries whose compilation alone cost a few ms of CPU per call
# (more than everything else routing does with a cached contact), so each process keeps them in memory
# and reloads them when a one-statement fingerprint of the four tables changes: row count, highest id
# and latest `updated_at` of each. A change made anywhere (admin, shell, another process) is seen by
# the next call. Bulk `queryset.update()` bypasses `auto_now`, so it must set `updated_at` itself (the
# admin's enable/disable actions do). Saves and deletes in this process also bump a local generation,
# for changes the fingerprint cannot see (e.g. tests that freeze the clock).

_CONFIG_MODELS = (PhoneNumber, RoutingRule, Agent, GhlLocation)


@dataclass
class RoutingConfig:
    fingerprint: tuple
    numbers: dict  # E.164 → PhoneNumber (location and default agent loaded)
    agent_locations: dict  # Retell agent id → the agent's GhlLocation, or None
    rules: tuple  # enabled rules (agent loaded), by (priority, id)
    _default_location: list = field(default_factory=list)  # [] until first needed, then [location or None]

    def default_location(self):
        """The default location, looked up on first need only (it may create the row)."""
        if not self._default_location:
            try:
                self._default_location.append(GhlLocation.objects.default())
            except NotConfigured:
                self._default_location.append(None)
        return self._default_location[0]

    def rules_for(self, location):
        """Enabled rules for calls to `location`: the unscoped ones and the location's own."""
        pk = location.pk if location else None
        return [rule for rule in self.rules if rule.location_id is None or rule.location_id == pk]


_config = None
_config_generation = 0


def _bump_config_generation(**kwargs):
    global _config_generation
    _config_generation += 1


for _model in _CONFIG_MODELS:
    signals.post_save.connect(_bump_config_generation, sender=_model, dispatch_uid=f"routing-config-{_model}")
    signals.post_delete.connect(
        _bump_config_generation, sender=_model, dispatch_uid=f"routing-config-{_model}"
    )


@functools.cache
def _fingerprint_sql():
    quote = connection.ops.quote_name
    return (
        " UNION ALL ".join(
            f"SELECT {position}, COUNT(*), MAX({quote('id')}), MAX({quote('updated_at')}) "
            f"FROM {quote(model._meta.db_table)}"
            for position, model in enumerate(_CONFIG_MODELS)
        )
        + " ORDER BY 1"
    )


def _fingerprint():
    with connection.cursor() as cursor:
        cursor.execute(_fingerprint_sql())
        tables = tuple(tuple(row) for row in cursor.fetchall())
    # The default location also depends on settings.
    return (_config_generation, settings.GHL_LOCATION_ID, settings.GHL_SANDBOX, tables)


def routing_config():
    """The current routing configuration: one cheap query when nothing changed, a reload when it did."""
    global _config
    fingerprint = _fingerprint()  # taken before loading: a change during the load reloads next time
    config = _config
    if config is not None and config.fingerprint == fingerprint:
        return config
    numbers = {
        phone.number: phone for phone in PhoneNumber.objects.select_related("location", "default_agent")
    }
    agent_locations = {
        agent.retell_agent_id: agent.location for agent in Agent.objects.select_related("location")
    }
    rules = tuple(RoutingRule.objects.filter(enabled=True).select_related("agent").order_by("priority", "id"))
    _config = config = RoutingConfig(fingerprint, numbers, agent_locations, rules)
    return config


def resolve_dialled_number(dialled, agent_id="", config=None):
    """(PhoneNumber row or None, the GhlLocation that owns the number or None).

    Ownership: the number's own row, else the location of the number's Retell agent, else the default.
    """
    config = config or routing_config()
    phone = config.numbers.get(dialled)
    location = phone.location if phone else None
    if location is None and agent_id:
        location = config.agent_locations.get(agent_id)
    if location is None:
        location = config.default_location()
    return phone, location


def routing_rules(location, config=None):
    return (config or routing_config()).rules_for(location)


def route_inbound(
    *,
    event,
    from_number,
    to_number,
    agent_id="",
    started=None,
    now=None,
    record=True,
    use_cache=True,
):
    """Route one inbound call or chat; record the decision unless `record` is False (the tester).

    `started` is time.monotonic() when the request arrived (the budget counts from it); `now` the
    wall-clock time the rules' windows are read against. Raises InvalidPhoneNumber for a dialled
    number that is not one.
    """
    if event not in INBOUND_EVENTS:
        raise ValueError(f"not an inbound event: {event!r}")
    started = time.monotonic() if started is None else started
    now = timezone.now() if now is None else now
    deadline = started + settings.INBOUND_ROUTING_BUDGET_MS / 1000 - _RESERVE_SECONDS

    dialled = to_e164(to_number)
    caller = to_e164_or_none(from_number)
    config = routing_config()
    phone, location = resolve_dialled_number(dialled, agent_id, config)
    lookup = lookup_caller(location, caller, deadline=deadline, use_cache=use_cache)
    if lookup.status == Lookup.FAILED:
        logger.warning("inbound routing fails open for %s → %s: %s", caller, dialled, lookup.error)

    decision = decide_route(
        caller,
        dialled,
        lookup.contact,
        now,
        routing_rules(location, config),
        event=event,
        contact_known=lookup.known,
        location=location,
        default_agent=phone.default_agent if phone else None,
    )
    outcome = InboundRouting(
        event=event,
        caller=caller,
        caller_raw=str(from_number),
        dialled=dialled,
        phone_number=phone,
        location=location,
        lookup=lookup,
        decision=decision,
        elapsed_ms=round((time.monotonic() - started) * 1000, 2),
    )
    if record:
        outcome.record = _record(outcome, agent_id=agent_id)
    return outcome


def _record(outcome, *, agent_id):
    """Write the decision row; its id goes into the answer's metadata for linking the Call later."""
    decision_id = uuid.uuid4()
    body = outcome.answer[outcome.event]
    if "metadata" in body:
        body["metadata"]["routing_decision_id"] = str(decision_id)
    contact = outcome.lookup.contact or {}
    rule = outcome.decision.rule
    variables = body.get("dynamic_variables") or {}
    try:
        return RoutingDecision.objects.create(
            id=decision_id,
            event=outcome.event,
            from_number=(outcome.caller or outcome.caller_raw)[:32],
            to_number=outcome.dialled,
            retell_agent_id=agent_id[:128],
            location=outcome.location,
            ghl_contact_id=str(contact.get("id") or "")[:64],
            contact_name=variables.get("customer_name", "")[:200],
            lookup=outcome.lookup.status,
            from_cache=outcome.lookup.from_cache,
            ghl_failed=outcome.lookup.status == Lookup.FAILED,
            ghl_error=outcome.lookup.error,
            matched_rule=rule,
            rule_name=rule.name if rule else "",
            rejected=outcome.decision.rejected,
            override_agent_id=body.get("override_agent_id", ""),
            answer=outcome.answer,
            elapsed_ms=outcome.elapsed_ms,
        )
    except DatabaseError:
        # The caller is ringing: answer anyway. The id in the metadata then links nothing.
        logger.exception("inbound routing: could not record the decision")
        return None


def link_routing_decision(call):
    """Attach the RoutingDecision named in the call's metadata to `call`; return it, or None.

    For the post-call pipeline: Retell copies our inbound answer's metadata onto the call. Idempotent
    and race-free: the conditional UPDATE only claims a decision not yet linked.
    """
    metadata = call.metadata if isinstance(call.metadata, dict) else {}
    try:
        decision_id = uuid.UUID(str(metadata.get("routing_decision_id")))
    except ValueError:
        return None
    RoutingDecision.objects.filter(pk=decision_id, call__isnull=True).update(call=call)
    return RoutingDecision.objects.filter(pk=decision_id, call=call).first()
