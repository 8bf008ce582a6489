"""An MCP token as an entry of a Retell LLM's `mcps` list (REFERENCE.md §8), ready to paste."""

from django.conf import settings
from django.urls import reverse
from django.utils.text import slugify

# Retell documents `timeout_ms` as the wait for the connection (default 2 minutes). 20 s is plenty for
# that, and still covers a tool call if Retell applies it there too (a booking makes up to three GHL
# requests of at most 5 s each).
RETELL_TIMEOUT_MS = 20_000
SECRET_PLACEHOLDER = "<the token shown once when it was created>"


def mcp_url(base_url=None):
    return (base_url or settings.PUBLIC_BASE_URL).rstrip("/") + reverse("mcp")


def retell_mcps_entry(token, secret=None, base_url=None):
    """`{name, url, headers, timeout_ms}` for `token`; the secret itself only when it is given."""
    return {
        "name": slugify(token.name)[:64] or "ghl-tools",
        "url": mcp_url(base_url),
        "headers": {"Authorization": f"Bearer {secret or SECRET_PLACEHOLDER}"},
        "timeout_ms": RETELL_TIMEOUT_MS,
    }
