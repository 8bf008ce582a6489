"""Typed errors raised by the vendor clients.

Callers decide what to do from the type alone: a `RetryableError` may succeed later (timeouts,
connection failures, 429, 5xx); a `PermanentError` will not (other 4xx, malformed answers); a
`NotConfigured` means an operator must set something up first.
"""


class NotConfigured(Exception):
    """A feature was used before its credentials or settings were provided."""


class VendorError(Exception):
    """An HTTP exchange with Retell or GHL failed."""

    retryable = False

    def __init__(self, message, *, vendor, status=None, body=None, retry_after=None):
        super().__init__(message)
        self.message = message
        self.vendor = vendor
        self.status = status  # HTTP status, None when no response arrived
        self.body = body  # parsed JSON error body when there was one, else text (truncated)
        self.retry_after = retry_after  # seconds the vendor asked us to wait, when it said

    def __str__(self):
        where = f"{self.vendor} HTTP {self.status}" if self.status else self.vendor
        return f"{where}: {self.message}"


class RetryableError(VendorError):
    retryable = True


class PermanentError(VendorError):
    retryable = False


class NotFound(PermanentError):
    """404: the object does not exist (or the token cannot see it)."""


class RateLimited(RetryableError):
    """429: the vendor's burst or daily limit is spent; `retry_after` (seconds) is always set."""


class DuplicateContact(PermanentError):
    """GHL refused to create a contact that already exists; `contact_id` names the existing one."""

    def __init__(self, message, *, contact_id, **kwargs):
        super().__init__(message, **kwargs)
        self.contact_id = contact_id
