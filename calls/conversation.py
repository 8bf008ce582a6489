"""A call's transcript as a conversation for the call page: turns, with tool calls where they happened.

Retell's `transcript_with_tool_calls` interleaves utterances with `tool_call_invocation` /
`tool_call_result` items (paired by `tool_call_id`) and a few other kinds (`node_transition`, `dtmf`,
...). We show each tool call once, at the point it was invoked, with its result attached. Calls
without it fall back to `transcript_object`, then to the plain-text transcript.
"""

import json
from dataclasses import dataclass, field

from calls.notes import SPEAKERS, transcript_turns


@dataclass
class Turn:
    role: str  # agent | user | transfer_target | "" (unknown speaker)
    speaker: str
    text: str
    at_seconds: float | None = None
    kind: str = "turn"


@dataclass
class ToolCall:
    name: str
    tool_call_id: str
    arguments: str  # pretty JSON when it parses, else as sent
    result: str | None = None
    successful: bool | None = None
    at_seconds: float | None = None
    invocation: object = None  # our ToolInvocation log row, when one matches (latency, errors)
    kind: str = "tool"


@dataclass
class Marker:
    """Anything else Retell records in the flow: node transitions, DTMF digits, SMS, injected text."""

    label: str
    detail: str
    at_seconds: float | None = None
    kind: str = "marker"
    extra: dict = field(default_factory=dict)


def conversation(call, invocations=()):
    """The items to render, in order. `invocations` (ToolInvocation rows) are matched to tool calls."""
    items = call.transcript_with_tool_calls
    if isinstance(items, list) and items:
        return _from_items(items, list(invocations))
    if isinstance(call.transcript_object, list) and call.transcript_object:
        return [turn for turn in map(_turn, call.transcript_object) if turn]
    return [
        Turn(role=_role_of(speaker), speaker=speaker, text=text) for speaker, text in transcript_turns(call)
    ]


def _from_items(items, invocations):
    result, tool_calls = [], {}
    for item in items:
        if not isinstance(item, dict):
            continue
        role = item.get("role")
        if role == "tool_call_invocation":
            tool = ToolCall(
                name=str(item.get("name") or "?"),
                tool_call_id=str(item.get("tool_call_id") or ""),
                arguments=pretty(item.get("arguments")),
                at_seconds=_seconds(item.get("time_sec")),
            )
            tool.invocation = _take_invocation(invocations, tool.name, item.get("arguments"))
            tool_calls[tool.tool_call_id] = tool
            result.append(tool)
        elif role == "tool_call_result":
            tool = tool_calls.get(str(item.get("tool_call_id") or ""))
            if tool is None:  # a result whose invocation we never saw: show it on its own
                tool = ToolCall(
                    name="(unknown tool)", tool_call_id=str(item.get("tool_call_id") or ""), arguments=""
                )
                result.append(tool)
            tool.result = pretty(item.get("content"))
            tool.successful = item.get("successful") if isinstance(item.get("successful"), bool) else None
        elif role in SPEAKERS or ("content" in item and role not in MARKERS):
            turn = _turn(item)
            if turn:
                result.append(turn)
        else:
            result.append(_marker(role, item))
    return result


MARKERS = {
    "node_transition": "Node",
    "dtmf": "Keypad",
    "sms": "SMS",
    "injected": "Injected",
}


def _marker(role, item):
    if role == "node_transition":
        before = item.get("former_node_name") or item.get("former_node_id") or "start"
        after = item.get("new_node_name") or item.get("new_node_id") or "?"
        detail = f"{before} → {after}"
    elif role == "dtmf":
        detail = str(item.get("digit") or item.get("content") or "")
    else:
        detail = str(item.get("content") or "")
    extra = {k: v for k, v in item.items() if k not in ("role", "words", "content")}
    return Marker(
        label=MARKERS.get(role, str(role or "event").replace("_", " ").title()),
        detail=detail,
        at_seconds=_seconds(item.get("time_sec")),
        extra=extra,
    )


def _turn(item):
    if not isinstance(item, dict) or not item.get("content"):
        return None
    role = str(item.get("role") or "")
    words = item.get("words")
    start = (
        words[0].get("start") if isinstance(words, list) and words and isinstance(words[0], dict) else None
    )
    return Turn(
        role=role,
        speaker=SPEAKERS.get(role, role.replace("_", " ").title()),
        text=str(item["content"]),
        at_seconds=_seconds(start),
    )


def _role_of(speaker):
    return {label: role for role, label in SPEAKERS.items()}.get(speaker, "")


def _seconds(value):
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _take_invocation(invocations, name, arguments):
    """The first unmatched log row for this tool with the same arguments (else the same name)."""
    parsed = _parse(arguments)
    for exact in (True, False):
        for index, row in enumerate(invocations):
            if row.tool_name == name and (not exact or row.arguments == parsed):
                return invocations.pop(index)
    return None


def _parse(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def pretty(value):
    """JSON (or a string holding JSON) indented for reading; other strings unchanged."""
    if value is None:
        return ""
    parsed = _parse(value)
    if isinstance(parsed, dict | list):
        return json.dumps(parsed, indent=2, ensure_ascii=False, sort_keys=True)
    if isinstance(value, bool | int | float):
        return json.dumps(value)  # true, not Python's True
    return str(value)
