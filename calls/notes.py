"""The GHL note for a call: one builder shared by the live pipeline and the backfill command."""

import zoneinfo

from django.conf import settings
from django.template import Context, Engine, Template, TemplateSyntaxError
from django.template.loader import get_template
from django.utils import timezone

DEFAULT_TEMPLATE = "calls/ghl_note.txt"
SPEAKERS = {"agent": "Agent", "user": "Caller", "transfer_target": "Transfer target"}

# Operator templates get a sandbox-ish engine: no custom tag libraries, autoescape off (plain text).
_operator_engine = Engine(
    autoescape=False, libraries={}, builtins=["django.template.defaulttags", "django.template.defaultfilters"]
)


def build_note_body(call):
    """The note text for `call`: header, transcript turns and, once analysed, the analysis."""
    context = note_context(call)
    template_text = call.agent.note_template if call.agent and call.agent.note_template else ""
    # Times in the note read in the location's timezone, the one its staff live in.
    with timezone.override(zoneinfo.ZoneInfo(context["timezone"])):
        if template_text:
            try:
                return (
                    Template(template_text, engine=_operator_engine).render(Context(context)).strip() + "\n"
                )
            except TemplateSyntaxError:
                pass  # a broken operator template must not lose the note: fall back to ours
        return get_template(DEFAULT_TEMPLATE).render(context).strip() + "\n"


def note_context(call):
    location = call.location
    tz_name = location.timezone if location else settings.TIME_ZONE
    analysis = call.call_analysis or {}
    agent = call.agent
    return {
        "call": call,
        "agent_name": (call.agent.name if call.agent else "") or call.agent_name or call.retell_agent_id,
        "direction": call.get_direction_display() or "Call",
        "started_at": call.started_at,
        "timezone": tz_name,
        "duration": format_duration(call.duration_ms),
        "call_url": f"{settings.PUBLIC_BASE_URL}/calls/{call.call_id}/",
        "turns": transcript_turns(call) if agent is None or agent.sync_transcript_note else [],
        "has_analysis": bool(analysis) and (agent is None or agent.sync_summary_note),
        "summary": call.summary,
        "sentiment": call.user_sentiment,
        "successful": call.call_successful,
        "custom_data": sorted((call.custom_analysis_data or {}).items()),
    }


def transcript_turns(call):
    """[(speaker, text)] from the structured transcript, else from the plain text one."""
    turns = []
    for item in call.transcript_object or []:
        if isinstance(item, dict) and item.get("content"):
            turns.append((SPEAKERS.get(item.get("role"), str(item.get("role", "")).title()), item["content"]))
    if turns:
        return turns
    for line in (call.transcript or "").splitlines():
        speaker, sep, text = line.partition(": ")
        if sep and speaker in ("Agent", "User"):
            turns.append(("Caller" if speaker == "User" else "Agent", text))
        elif line.strip():
            turns.append(("", line.strip()))
    return turns


def format_duration(ms):
    if not ms:
        return ""
    seconds = round(ms / 1000)
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
