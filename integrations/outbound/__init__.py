"""Outbound calls from GHL workflows: a workflow's Webhook action asks, a Retell agent calls the contact.

`views` receives the webhook, `services` decides (duplicate? over the daily limit? inside the calling
window?) and dials through `integrations.retell`, `calling_window` does the timezone arithmetic.
"""
