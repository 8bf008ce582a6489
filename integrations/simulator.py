"""One realistic Retell phone call, played against a running retellghl over HTTP (`manage.py simulate_call`).

The simulator is Retell, seen from our server: it sends what Retell sends during an inbound call, in
Retell's order, each request signed with `X-Retell-Signature` exactly as Retell signs it
(`integrations.signatures.sign_retell_body`, the account's API key):

1. the inbound webhook (`call_inbound`) while the caller "rings";
2. `call_started`, with the agent, dynamic variables and metadata the inbound answer chose;
3. the custom functions the agent calls: `check_availability`, then `book_appointment` with a slot
   the first one returned (`{name, args, call}` bodies carrying the live call object);
4. `transcript_updated`, `call_ended` and `call_analyzed`, whose transcripts quote what the
   functions really answered (the booked time) and whose `transcript_with_tool_calls` holds the
   invocations and their results.

Payloads are shaped like Retell's (tests/fixtures/retell_*.json): a fresh `call_id`, real epoch-ms
timestamps, word timings at a speaking pace. `duplicates` repeats every event and function call
(Retell retries, often within a second); `out_of_order` delivers the post-call events last and
reversed (`call_analyzed` before `call_ended` before `call_started`). The server must end up with the
same single call, note and appointment either way.

HTTP goes through `requests` directly: this is a test peer standing in for Retell, not a vendor client.
"""

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

import requests

from integrations.signatures import SIGNATURE_HEADER, sign_retell_body
from integrations.tools.speech import spoken_date

INBOUND_PATH = "/api/webhooks/inbound"
EVENTS_PATH = "/api/webhooks/retell"
FUNCTIONS_PATH = "/api/functions/{name}"

# Speaking pace for the word timings: about 150 words a minute, with pauses between turns.
SECONDS_PER_WORD = 0.36
PAUSE_BETWEEN_TURNS = 0.8
COST_CENTS_PER_SECOND = 0.1167  # about $0.07 a minute, Retell's order of magnitude

# The caller we invent when routing does not know the number and the agent asks for a name.
UNKNOWN_CALLER_NAME = ("Jordan", "Baker")


class ServerUnreachable(Exception):
    """No connection to the server at all: nothing else in the call can work."""


@dataclass
class Step:
    """One HTTP request of the call, as the command prints it."""

    name: str  # "inbound webhook", "call_ended (2/3)", "check_availability"
    method: str
    path: str
    status: int | None  # None when no answer came (timeout)
    latency_ms: float
    ok: bool
    detail: str = ""


@dataclass
class Simulation:
    """What happened: every step, the route the server chose, and the booking if one was made."""

    call_id: str
    base_url: str
    from_number: str
    to_number: str
    agent_id: str  # the agent that took the call (the inbound override, else the number's agent)
    steps: list[Step] = field(default_factory=list)
    rejected: bool = False
    booked: dict | None = None  # book_appointment's answer
    caller_name: str = ""
    elapsed_ms: float = 0.0

    @property
    def failed_steps(self):
        return [step for step in self.steps if not step.ok]

    @property
    def ok(self):
        return not self.failed_steps

    @property
    def call_url(self):
        return f"{self.base_url}/admin/calls/call/?q={self.call_id}"

    def summary(self):
        requests_made = len(self.steps)
        failed = self.failed_steps
        if failed:
            first = failed[0]
            head = (
                f"FAILED {self.call_id}: {len(failed)} of {requests_made} requests failed, first "
                f"{first.name}: {first.status or 'no answer'} {first.detail}".rstrip()
            )
        else:
            head = f"OK {self.call_id}: {requests_made} requests answered in {self.elapsed_ms:.0f} ms"
        if self.rejected:
            return f"{head}; the inbound webhook rejected the call."
        who = f" ({self.caller_name})" if self.caller_name else ""
        booking = f"booked {self.booked['spoken_time']}" if self.booked else "nothing booked"
        return f"{head}; answered by {self.agent_id}{who}; {booking}. Call log: {self.call_url}"

    def as_dict(self):
        return {
            "ok": self.ok,
            "call_id": self.call_id,
            "from_number": self.from_number,
            "to_number": self.to_number,
            "agent_id": self.agent_id,
            "rejected": self.rejected,
            "booked": self.booked,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "call_url": self.call_url,
            "steps": [asdict(step) for step in self.steps],
            "summary": self.summary(),
        }


class Conversation:
    """The call's words and tool calls on one timeline, in the three shapes Retell reports them."""

    def __init__(self):
        self.items = []  # transcript_with_tool_calls, in order
        self.clock = 0.6  # seconds since the call started; Retell's first word comes after a beat

    def say(self, role, content):
        words = []
        for word in content.split():
            words.append({"word": word, "start": round(self.clock, 2), "end": round(self.clock + 0.3, 2)})
            self.clock += SECONDS_PER_WORD
        self.clock += PAUSE_BETWEEN_TURNS
        self.items.append({"role": role, "content": content, "words": words})

    def tool_call(self, name, arguments, *, answer_text, successful, seconds):
        tool_call_id = f"tc_{uuid.uuid4().hex[:12]}"
        self.items.append(
            {
                "role": "tool_call_invocation",
                "tool_call_id": tool_call_id,
                "name": name,
                "arguments": json.dumps(arguments, ensure_ascii=False),
            }
        )
        self.clock += seconds
        self.items.append(
            {
                "role": "tool_call_result",
                "tool_call_id": tool_call_id,
                "content": answer_text,
                "successful": successful,
            }
        )

    @property
    def turns(self):
        return [item for item in self.items if item["role"] in ("agent", "user")]

    @property
    def transcript(self):
        return "".join(f"{'Agent' if t['role'] == 'agent' else 'User'}: {t['content']}\n" for t in self.turns)

    @property
    def duration_ms(self):
        return int(self.clock * 1000)


class CallSimulator:
    """Plays one call; `on_step(step)` is told about each request as soon as it is answered."""

    def __init__(
        self,
        *,
        base_url,
        api_key,
        from_number,
        to_number,
        agent_id,
        duplicates=1,
        out_of_order=False,
        booking=True,
        session=None,
        timeout=20.0,
        today=None,
        on_step: Callable[[Step], None] | None = None,
    ):
        if duplicates < 1:
            raise ValueError("duplicates must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.from_number = from_number
        self.to_number = to_number
        self.agent_id = agent_id
        self.duplicates = duplicates
        self.out_of_order = out_of_order
        self.booking = booking
        self.session = session or requests.Session()
        self.timeout = timeout
        self.today = today or datetime.now().date()
        self.on_step = on_step or (lambda step: None)

    # --- the call ---------------------------------------------------------------------------

    def run(self):
        """Play the whole call; raises ServerUnreachable when the server cannot be reached."""
        started = time.perf_counter()
        self.sim = Simulation(
            call_id=f"call_{uuid.uuid4().hex}",
            base_url=self.base_url,
            from_number=self.from_number,
            to_number=self.to_number,
            agent_id=self.agent_id,
        )
        self.start_ms = _now_ms()
        self.conversation = Conversation()
        try:
            self._play()
        finally:
            self.sim.elapsed_ms = (time.perf_counter() - started) * 1000
        return self.sim

    def _play(self):
        routed = self._inbound()
        if routed.get("reject"):
            self.sim.rejected = True
            return
        # Retell takes the override (or keeps the number's agent) and puts the variables and the
        # metadata on the call: every later request carries them back to us.
        self.sim.agent_id = routed.get("override_agent_id") or self.agent_id
        self.agent_version = routed.get("override_agent_version") or 1
        self.variables = routed.get("dynamic_variables") or {}
        self.metadata = routed.get("metadata") or {}
        self.caller_known = self.variables.get("contact_found") == "true"
        self.sim.caller_name = self.variables.get("customer_name", "") if self.caller_known else ""

        started = ("call_started", self._call_object("ongoing", at_start=True))
        if not self.out_of_order:
            self._event(*started)
        self._conversation_with_tools()
        ended = self._call_object("ended")
        deliveries = [
            ("transcript_updated", self._call_object("ongoing")),
            ("call_ended", ended),
            ("call_analyzed", {**ended, "call_analysis": self._analysis()}),
        ]
        if self.out_of_order:
            # Webhooks delayed and reordered on the way: the last one arrives first.
            deliveries = [*reversed(deliveries), started]
        for event, call in deliveries:
            self._event(event, call)

    def _inbound(self):
        body = {
            "event": "call_inbound",
            "event_timestamp": _now_ms(),
            "call_inbound": {
                "agent_id": self.agent_id,
                "agent_version": 1,
                "from_number": self.from_number,
                "to_number": self.to_number,
            },
        }
        _, answer, _ = self._post(
            "inbound webhook", INBOUND_PATH, body, check=_inbound_answer_ok, report=False
        )
        step = self.sim.steps[-1]
        routed = answer.get("call_inbound") if isinstance(answer, dict) else None
        if isinstance(routed, dict):
            step.detail = step.detail or _describe_route(routed, self.agent_id)
        else:
            routed = {}  # Retell falls back to the number's own agent, without variables: so do we.
        self.on_step(step)
        return routed

    def _conversation_with_tools(self):
        talk = self.conversation
        first_name = self.variables.get("first_name", "") if self.caller_known else ""
        greeting = f"Hi {first_name}, welcome back! " if first_name else ""
        talk.say("agent", f"Thanks for calling, this is Ava. {greeting}How can I help you today?")
        wanted = next_weekday(self.today)
        talk.say("user", f"Hi, I'd like to book a cleaning, ideally {spoken_date(wanted)} in the afternoon.")

        offered = self._function(
            "check_availability", {"date": wanted.isoformat(), "time_of_day": "afternoon"}
        )
        slots = (offered or {}).get("slots") or (offered or {}).get("alternatives") or []
        if offered is None or "error" in offered or not slots:
            talk.say("agent", _message(offered, "Sorry, I can't check the calendar right now."))
            talk.say("user", "No problem, I'll call back later. Bye!")
            talk.say("agent", "Sorry about that. Goodbye!")
            return
        talk.say("agent", f"{offered['message']} Which works best for you?")
        if not self.booking:
            talk.say("user", "Let me check my schedule and call you back. Thanks!")
            talk.say("agent", "Of course. Talk soon, goodbye!")
            return

        arguments = {"start_time": slots[0]["start_time"]}
        talk.say("user", "The first one, please.")
        if not self.caller_known:
            talk.say("agent", "Sure. Can I get your first and last name?")
            first, last = UNKNOWN_CALLER_NAME
            talk.say("user", f"It's {first} {last}.")
            arguments.update(first_name=first, last_name=last)
            self.sim.caller_name = f"{first} {last}"
        booked = self._function("book_appointment", arguments)
        if booked is None or not booked.get("booked"):
            talk.say("agent", _message(booked, "Sorry, I couldn't book that."))
            talk.say("user", "Okay, I'll try again later.")
            talk.say("agent", "Sorry about that. Goodbye!")
            return
        self.sim.booked = booked
        talk.say("agent", f"{booked['message']} Is there anything else I can help with?")
        talk.say("user", "No, that's all. Thank you!")
        talk.say("agent", f"You're welcome{', ' + first_name if first_name else ''}. Have a great day!")

    def _analysis(self):
        who = self.sim.caller_name or "The caller"
        if self.sim.booked:
            summary = (
                f"{who} called to book a cleaning. The agent checked availability and booked "
                f"{self.sim.booked['spoken_time']}."
            )
        elif not self.booking:
            summary = f"{who} called about a cleaning, heard the available times and will call back to book."
        else:
            summary = f"{who} called to book a cleaning, but no appointment could be booked."
        successful = bool(self.sim.booked) or not self.booking
        return {
            "call_summary": summary,
            "in_voicemail": False,
            "user_sentiment": "Positive" if successful else "Neutral",
            "call_successful": successful,
            "custom_analysis_data": {"appointment_booked": bool(self.sim.booked), "service": "cleaning"},
        }

    # --- payloads -----------------------------------------------------------------------------

    def _call_object(self, status, *, at_start=False):
        """The call as Retell describes it at this point: live (`ongoing`) or finished (`ended`)."""
        call = {
            "call_id": self.sim.call_id,
            "call_type": "phone_call",
            "agent_id": self.sim.agent_id,
            "agent_version": self.agent_version,
            "call_status": status,
            "direction": "inbound",
            "from_number": self.from_number,
            "to_number": self.to_number,
            "start_timestamp": self.start_ms,
            "telephony_identifier": {
                "twilio_call_sid": f"CA{uuid.uuid5(uuid.NAMESPACE_URL, self.sim.call_id).hex}"
            },
            "data_storage_setting": "everything",
            "opt_in_signed_url": False,
        }
        # Omitted, not empty, when routing set none (REFERENCE.md §2).
        if self.variables:
            call["retell_llm_dynamic_variables"] = dict(self.variables)
        if self.metadata:
            call["metadata"] = dict(self.metadata)
        if at_start:
            return call
        talk = self.conversation
        call["transcript"] = talk.transcript
        call["transcript_object"] = [dict(turn) for turn in talk.turns]
        call["transcript_with_tool_calls"] = [dict(item) for item in talk.items]
        if status == "ended":
            seconds = talk.duration_ms / 1000
            call.update(
                end_timestamp=self.start_ms + talk.duration_ms,
                duration_ms=talk.duration_ms,
                disconnection_reason="agent_hangup",
                collected_dynamic_variables={"previous_node": "booking", "current_node": "goodbye"},
                call_cost={
                    "product_costs": [
                        {
                            "product": "retell_platform",
                            "unit_price": COST_CENTS_PER_SECOND,
                            "cost": round(seconds * COST_CENTS_PER_SECOND, 2),
                        }
                    ],
                    "total_duration_seconds": round(seconds),
                    "total_duration_unit_price": COST_CENTS_PER_SECOND,
                    "combined_cost": round(seconds * COST_CENTS_PER_SECOND, 2),
                },
            )
        return call

    # --- HTTP ---------------------------------------------------------------------------------

    def _function(self, name, arguments):
        """Call one custom function as Retell does; returns its (first) JSON answer, or None."""
        body = {"name": name, "args": arguments, "call": self._call_object("ongoing")}
        path = FUNCTIONS_PATH.format(name=name)
        first = None
        for attempt in range(1, self.duplicates + 1):
            label = self._label(name, attempt)
            started = time.perf_counter()
            status, answer, text = self._post(label, path, body, check=_function_answer_ok)
            if attempt == 1:
                first = (answer if isinstance(answer, dict) else None, text, time.perf_counter() - started)
        answer, text, seconds = first
        self.conversation.tool_call(
            name,
            arguments,
            answer_text=text,
            successful=answer is not None and "error" not in answer,
            seconds=seconds,
        )
        return answer

    def _event(self, event, call):
        for attempt in range(1, self.duplicates + 1):
            self._post(
                self._label(event, attempt), EVENTS_PATH, {"event": event, "call": call}, check=_acknowledged
            )

    def _label(self, name, attempt):
        return f"{name} ({attempt}/{self.duplicates})" if self.duplicates > 1 else name

    def _post(self, name, path, payload, *, check, report=True):
        """Send one signed request and record it as a Step (reported at once unless `report` is False).

        Returns (status or None, the JSON answer or None, the answer's text).
        """
        raw = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            # Signed at send time, like each of Retell's deliveries and retries.
            SIGNATURE_HEADER: sign_retell_body(raw, self.api_key),
            "User-Agent": "retellghl-simulate-call/1",
        }
        started = time.perf_counter()
        try:
            response = self.session.post(
                self.base_url + path, data=raw, headers=headers, timeout=self.timeout
            )
        except requests.ConnectionError as exc:
            if isinstance(exc, requests.exceptions.ConnectTimeout) or not self.sim.steps:
                raise ServerUnreachable(f"cannot reach {self.base_url}: {exc}") from exc
            step = Step(name, "POST", path, None, _ms_since(started), False, f"connection failed: {exc}")
            return self._record(step, report), None, ""
        except requests.Timeout:
            step = Step(
                name, "POST", path, None, _ms_since(started), False, f"no answer in {self.timeout:g} s"
            )
            return self._record(step, report), None, ""
        latency = _ms_since(started)
        try:
            answer = response.json() if response.content else None
        except ValueError:
            answer = None
        ok, detail = check(response.status_code, answer)
        if response.status_code == 401 and isinstance(answer, dict):
            detail = f"{answer.get('error')}: is --api-key the server's RETELL_API_KEY?"
        self._record(Step(name, "POST", path, response.status_code, latency, ok, detail), report)
        return response.status_code, answer, response.text

    def _record(self, step, report):
        self.sim.steps.append(step)
        if report:
            self.on_step(step)
        return step.status


# --- answers: what counts as success ------------------------------------------------------------


def _describe_route(routed, number_agent):
    """What the inbound answer decided, in a few words for the step line."""
    if routed.get("reject"):
        return "the call was rejected"
    variables = routed.get("dynamic_variables") or {}
    metadata = routed.get("metadata") or {}
    parts = [f"routed to {routed.get('override_agent_id') or number_agent + ' (no override)'}"]
    if metadata.get("routing_rule"):
        parts.append(f"rule {metadata['routing_rule']!r}")
    found = variables.get("contact_found")
    if found == "true":
        parts.append(
            f"{variables.get('customer_name') or 'contact'} {variables.get('contact_id', '')}".strip()
        )
    elif found == "unknown":
        parts.append("GHL lookup failed, routed without the contact (fail-open)")
    else:
        parts.append("unknown caller")
    return ", ".join(parts)


def _inbound_answer_ok(status, answer):
    if status != 200:
        return False, _error_detail(answer)
    if not isinstance(answer, dict) or not isinstance(answer.get("call_inbound"), dict):
        return False, "answer has no call_inbound object"
    return True, ""


def _function_answer_ok(status, answer):
    if status != 200:
        return False, _error_detail(answer)
    if not isinstance(answer, dict):
        return False, "answer is not a JSON object"
    if "error" in answer:
        return False, f"{answer['error']}: {answer.get('message', '')}"
    return True, str(answer.get("message", ""))


def _acknowledged(status, answer):
    return (200 <= status < 300), "" if 200 <= status < 300 else _error_detail(answer)


def _error_detail(answer):
    if isinstance(answer, dict) and answer.get("error"):
        return f"{answer['error']}: {answer.get('message', '')}"
    return ""


def _message(answer, fallback):
    return answer.get("message") if isinstance(answer, dict) and answer.get("message") else fallback


def next_weekday(today: date) -> date:
    """The first Monday-to-Friday day after `today`: a day the demo calendar is open."""
    day = today + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _now_ms():
    return int(time.time() * 1000)


def _ms_since(started):
    return round((time.perf_counter() - started) * 1000, 1)
