"""The GHL sandbox: an in-process stand-in for the GoHighLevel endpoints we use.

With `GHL_SANDBOX=1` every `GhlClient` session gets `adapter.SandboxAdapter` mounted on GHL's base
URL, so the real client code (headers, Version, errors, rate-limit headers) runs unchanged while
`handlers` answers from the sandbox tables (`models`) instead of the network. `seed` fills them with
a demo location, contacts, a calendar and agents (`manage.py seed_sandbox`).

Only constants live here: `integrations.models` imports them, so this module must stay light.
"""

SANDBOX_LOCATION_ID = "loc_sandbox"
SANDBOX_CALENDAR_ID = "cal_sandbox"
# Sent as the bearer token by locations that have none. The sandbox accepts any bearer token; none
# of them ever leaves the process.
SANDBOX_TOKEN = "sandbox"
