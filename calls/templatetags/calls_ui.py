"""Small display filters for the operator UI templates."""

import json

from django import template

from calls.conversation import pretty

register = template.Library()


@register.filter
def duration(ms):
    """Milliseconds as a clock: 37059 → "0:37", 3725000 → "1:02:05"."""
    if ms in (None, ""):
        return "–"
    return clock(int(ms) / 1000)


@register.filter
def clock(seconds):
    """Seconds into the call as m:ss (h:mm:ss past an hour)."""
    if seconds in (None, ""):
        return ""
    total = int(round(float(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@register.filter
def pretty_json(value):
    return pretty(value)


@register.filter
def pretty_raw(raw_body):
    """A stored webhook body, indented when it is JSON (it always should be), else as received."""
    try:
        return json.dumps(json.loads(raw_body), indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return raw_body or ""


@register.filter
def percent(value):
    return "–" if value is None else f"{value}%"


@register.filter
def milliseconds(value):
    if value is None:
        return "–"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{round(value)} ms"


@register.filter
def sentiment_class(value):
    return {"positive": "good", "negative": "bad", "neutral": "neutral"}.get(
        str(value or "").lower(), "muted"
    )


SYNC_CLASSES = {"synced": "good", "done": "good", "failed": "bad", "pending": "warn", "running": "warn"}


@register.filter
def state_class(value):
    return SYNC_CLASSES.get(str(value or ""), "muted")


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def words(value):
    """snake_case codes as words: "agent_hangup" → "agent hangup"."""
    return str(value or "").replace("_", " ")


@register.filter
def dollars(cents):
    return "" if cents is None else f"${cents / 100:.2f}"


@register.filter
def web_url(value):
    """The URL if it is http(s), else "": vendor data never becomes a javascript: link."""
    text = str(value or "").strip()
    return text if text.lower().startswith(("https://", "http://")) else ""
