"""What the GHL sandbox holds: the contacts, notes, calendars, appointments, workflow enrolments and
opportunities that "reached GHL" while `GHL_SANDBOX` is on.

The tables belong to the `integrations` app (imported by `integrations/models.py`). GHL's own
rules that we depend on are database constraints here, so concurrent requests cannot break them:
one contact per phone and per email in a location, one live appointment per calendar slot, one
opportunity per contact in a pipeline.
"""

import secrets
import string
import zoneinfo
from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q
from django.utils.timezone import now

ID_ALPHABET = string.ascii_letters + string.digits


def new_ghl_id():
    """An id shaped like GHL's: 20 random letters and digits."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(20))


def default_open_weekdays():
    return [1, 2, 3, 4, 5]  # ISO weekdays: Monday to Friday


class SandboxContact(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_ghl_id)
    location_id = models.CharField(max_length=64, db_index=True)
    first_name = models.CharField(max_length=200, blank=True)
    last_name = models.CharField(max_length=200, blank=True)
    email = models.CharField(
        max_length=254, blank=True, help_text="Stored lowercase, like GHL's duplicate check."
    )
    phone = models.CharField(
        max_length=40,
        blank=True,
        help_text="Kept exactly as sent: like GHL, a formatted number does not match its E.164 form.",
    )
    tags = models.JSONField(default=list, blank=True)
    custom_fields = models.JSONField(default=dict, blank=True, help_text="Custom field id → value.")
    timezone = models.CharField(max_length=64, blank=True)
    source = models.CharField(max_length=200, blank=True)
    dnd = models.BooleanField(default=False)
    attributes = models.JSONField(
        default=dict, blank=True, help_text="Other contact fields, as sent (address, company, ...)."
    )
    date_added = models.DateTimeField(default=now)
    date_updated = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "integrations"
        ordering = ["first_name", "last_name", "id"]
        verbose_name = "sandbox contact"
        constraints = [
            models.UniqueConstraint(
                fields=["location_id", "phone"], condition=~Q(phone=""), name="sandbox_contact_one_per_phone"
            ),
            models.UniqueConstraint(
                fields=["location_id", "email"], condition=~Q(email=""), name="sandbox_contact_one_per_email"
            ),
        ]

    def __str__(self):
        return f"{self.name or '(no name)'} {self.phone}".strip()

    @property
    def name(self):
        return f"{self.first_name} {self.last_name}".strip()


class SandboxNote(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_ghl_id)
    contact = models.ForeignKey(SandboxContact, on_delete=models.CASCADE, related_name="notes")
    body = models.TextField()
    title = models.CharField(max_length=200, blank=True)
    user_id = models.CharField(max_length=64, blank=True)
    date_added = models.DateTimeField(default=now)
    date_updated = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "integrations"
        ordering = ["-date_added", "id"]
        verbose_name = "sandbox note"

    def __str__(self):
        first_line = self.body.strip().splitlines()[0] if self.body.strip() else ""
        return first_line[:80]


class SandboxCalendar(models.Model):
    """A calendar with weekly open hours; slots are generated on a fixed grid in its timezone."""

    id = models.CharField(primary_key=True, max_length=64, default=new_ghl_id)
    location_id = models.CharField(max_length=64, db_index=True)
    name = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="America/Los_Angeles")
    open_weekdays = models.JSONField(
        default=default_open_weekdays, help_text="ISO weekdays with open hours: 1 = Monday … 7 = Sunday."
    )
    opens_at = models.TimeField(help_text="First slot of an open day, local time.")
    closes_at = models.TimeField(help_text="Every slot ends by this local time.")
    slot_minutes = models.PositiveSmallIntegerField(default=60, help_text="Slot length and slot spacing.")

    class Meta:
        app_label = "integrations"
        ordering = ["name"]
        verbose_name = "sandbox calendar"

    def __str__(self):
        return f"{self.name} ({self.id})"

    @property
    def tz(self):
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def slot_length(self):
        return timedelta(minutes=self.slot_minutes)

    def slot_starts(self, start, end):
        """Grid slots starting in [start, end), as aware datetimes in the calendar's timezone.

        Each day's grid is built from local wall-clock times, so 9:00 stays 9:00 across DST changes
        (transitions happen at night, outside open hours).
        """
        tz = self.tz
        day = start.astimezone(tz).date()
        last_day = end.astimezone(tz).date()
        while day <= last_day:
            if day.isoweekday() in self.open_weekdays:
                slot = datetime.combine(day, self.opens_at, tzinfo=tz)
                closing = datetime.combine(day, self.closes_at, tzinfo=tz)
                while slot + self.slot_length <= closing:
                    if start <= slot < end:
                        yield slot
                    slot = slot + self.slot_length
            day += timedelta(days=1)

    def is_slot_start(self, moment):
        local = moment.astimezone(self.tz)
        return any(slot == local for slot in self.slot_starts(local, local + timedelta(seconds=1)))


class SandboxAppointment(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "New"
        CONFIRMED = "confirmed", "Confirmed"
        CANCELLED = "cancelled", "Cancelled"
        SHOWED = "showed", "Showed"
        NOSHOW = "noshow", "No show"
        INVALID = "invalid", "Invalid"

    id = models.CharField(primary_key=True, max_length=64, default=new_ghl_id)
    calendar = models.ForeignKey(SandboxCalendar, on_delete=models.CASCADE, related_name="appointments")
    contact = models.ForeignKey(SandboxContact, on_delete=models.CASCADE, related_name="appointments")
    location_id = models.CharField(max_length=64)
    title = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CONFIRMED)
    start_time = models.DateTimeField()
    end_time = models.DateTimeField()
    assigned_user_id = models.CharField(max_length=64, blank=True)
    attributes = models.JSONField(default=dict, blank=True, help_text="Other fields, as sent (address, ...).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "integrations"
        ordering = ["start_time"]
        verbose_name = "sandbox appointment"
        constraints = [
            # Two live bookings of one slot are impossible even when both requests race.
            models.UniqueConstraint(
                fields=["calendar", "start_time"],
                condition=~Q(status="cancelled"),
                name="sandbox_appointment_one_per_slot",
            )
        ]

    def __str__(self):
        return f"{self.title or 'Appointment'} at {self.start_time:%Y-%m-%d %H:%M} UTC"


class SandboxWorkflowEnrolment(models.Model):
    contact = models.ForeignKey(SandboxContact, on_delete=models.CASCADE, related_name="workflow_enrolments")
    workflow_id = models.CharField(max_length=64)
    event_start_time = models.CharField(max_length=64, blank=True)
    enrolled_at = models.DateTimeField(default=now)

    class Meta:
        app_label = "integrations"
        ordering = ["-enrolled_at"]
        verbose_name = "sandbox workflow enrolment"

    def __str__(self):
        return f"{self.contact_id} → {self.workflow_id}"


class SandboxOpportunity(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        WON = "won", "Won"
        LOST = "lost", "Lost"
        ABANDONED = "abandoned", "Abandoned"

    id = models.CharField(primary_key=True, max_length=64, default=new_ghl_id)
    location_id = models.CharField(max_length=64)
    pipeline_id = models.CharField(max_length=64)
    pipeline_stage_id = models.CharField(max_length=64, blank=True)
    contact = models.ForeignKey(SandboxContact, on_delete=models.CASCADE, related_name="opportunities")
    name = models.CharField(max_length=300)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    monetary_value = models.FloatField(null=True, blank=True)
    assigned_to = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "integrations"
        ordering = ["-updated_at"]
        verbose_name = "sandbox opportunity"
        verbose_name_plural = "sandbox opportunities"
        constraints = [
            models.UniqueConstraint(
                fields=["pipeline_id", "contact"], name="sandbox_opportunity_one_per_pipeline"
            )
        ]

    def __str__(self):
        return self.name
