"""Admin for the GHL sandbox: what "reached GHL" while GHL_SANDBOX is on.

Notes, appointments, workflow enrolments and opportunities are written by the sandbox's API and are
read-only here (appointments can be cancelled, which frees their slot). Contacts and calendars are
editable so operators can stage a test: add their own phone as a contact, tag it `vip`, change hours.
"""

import zoneinfo

from django import forms
from django.contrib import admin
from django.db.models import Count
from django.utils.html import format_html

from integrations.phones import InvalidPhoneNumber, to_e164
from integrations.sandbox.models import (
    SandboxAppointment,
    SandboxCalendar,
    SandboxContact,
    SandboxNote,
    SandboxOpportunity,
    SandboxWorkflowEnrolment,
)


class ViewOnlyAdmin(admin.ModelAdmin):
    """Rows the sandbox API wrote: operators read or delete them, never edit what "GHL" holds."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ViewOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return self.fields


class NoteInline(ViewOnlyInline):
    model = SandboxNote
    fields = ["date_added", "date_updated", "body"]


class AppointmentInline(ViewOnlyInline):
    model = SandboxAppointment
    fk_name = "contact"
    fields = ["start_time", "calendar", "title", "status"]


class EnrolmentInline(ViewOnlyInline):
    model = SandboxWorkflowEnrolment
    fields = ["workflow_id", "enrolled_at", "event_start_time"]


class OpportunityInline(ViewOnlyInline):
    model = SandboxOpportunity
    fields = ["name", "pipeline_id", "status", "monetary_value", "updated_at"]


class SandboxContactForm(forms.ModelForm):
    class Meta:
        model = SandboxContact
        fields = [
            "location_id",
            "first_name",
            "last_name",
            "phone",
            "email",
            "tags",
            "custom_fields",
            "timezone",
            "source",
            "dnd",
        ]

    def clean_phone(self):
        # Typed by a person: store E.164, as GHL's own UI does, so calls from this number match it.
        phone = self.cleaned_data["phone"].strip()
        if not phone:
            return ""
        try:
            return to_e164(phone)
        except InvalidPhoneNumber as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_email(self):
        return self.cleaned_data["email"].strip().lower()

    def clean_tags(self):
        tags = self.cleaned_data["tags"] or []
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise forms.ValidationError('Tags are a JSON list of strings, e.g. ["patient", "vip"].')
        return list(dict.fromkeys(tag.strip().lower() for tag in tags if tag.strip()))


@admin.register(SandboxContact)
class SandboxContactAdmin(admin.ModelAdmin):
    form = SandboxContactForm
    list_display = [
        "__str__",
        "phone",
        "email",
        "tag_list",
        "notes_count",
        "appointments_count",
        "date_updated",
    ]
    list_filter = ["location_id", "source", "dnd"]
    search_fields = ["id", "first_name", "last_name", "phone", "email"]
    readonly_fields = ["id", "date_added", "date_updated", "attributes"]
    inlines = [NoteInline, AppointmentInline, EnrolmentInline, OpportunityInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                notes_total=Count("notes", distinct=True),
                appointments_total=Count("appointments", distinct=True),
            )
        )

    @admin.display(description="Tags")
    def tag_list(self, obj):
        return ", ".join(obj.tags)

    @admin.display(description="Notes", ordering="notes_total")
    def notes_count(self, obj):
        return obj.notes_total

    @admin.display(description="Appointments", ordering="appointments_total")
    def appointments_count(self, obj):
        return obj.appointments_total


@admin.register(SandboxNote)
class SandboxNoteAdmin(ViewOnlyAdmin):
    list_display = ["__str__", "contact", "date_added", "date_updated"]
    list_filter = ["date_added"]
    search_fields = [
        "id",
        "body",
        "contact__id",
        "contact__phone",
        "contact__first_name",
        "contact__last_name",
    ]
    list_select_related = ["contact"]
    fields = ["id", "contact", "date_added", "date_updated", "user_id", "title", "formatted_body"]
    readonly_fields = fields

    @admin.display(description="Body")
    def formatted_body(self, obj):
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", obj.body)


class SandboxCalendarForm(forms.ModelForm):
    class Meta:
        model = SandboxCalendar
        fields = [
            "id",
            "location_id",
            "name",
            "timezone",
            "open_weekdays",
            "opens_at",
            "closes_at",
            "slot_minutes",
        ]

    def clean_timezone(self):
        name = self.cleaned_data["timezone"]
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise forms.ValidationError(f"{name!r} is not an IANA timezone (e.g. America/New_York)") from exc
        return name

    def clean_open_weekdays(self):
        days = self.cleaned_data["open_weekdays"]
        if not isinstance(days, list) or not all(isinstance(day, int) and 1 <= day <= 7 for day in days):
            raise forms.ValidationError(
                "A JSON list of ISO weekdays, 1 = Monday … 7 = Sunday, e.g. [1, 2, 3, 4, 5]."
            )
        return sorted(set(days))

    def clean(self):
        cleaned = super().clean()
        opens, closes = cleaned.get("opens_at"), cleaned.get("closes_at")
        if opens and closes and closes <= opens:
            self.add_error("closes_at", "Closing time must be after opening time.")
        if cleaned.get("slot_minutes") == 0:
            self.add_error("slot_minutes", "A slot lasts at least one minute.")
        return cleaned


@admin.register(SandboxCalendar)
class SandboxCalendarAdmin(admin.ModelAdmin):
    form = SandboxCalendarForm
    list_display = [
        "name",
        "id",
        "location_id",
        "timezone",
        "open_weekdays",
        "opens_at",
        "closes_at",
        "slot_minutes",
    ]
    list_filter = ["location_id", "timezone"]
    search_fields = ["id", "name"]


@admin.register(SandboxAppointment)
class SandboxAppointmentAdmin(ViewOnlyAdmin):
    list_display = ["title", "contact", "calendar", "local_start", "status", "created_at"]
    list_filter = ["status", "calendar"]
    search_fields = [
        "id",
        "title",
        "contact__id",
        "contact__phone",
        "contact__first_name",
        "contact__last_name",
    ]
    list_select_related = ["contact", "calendar"]
    date_hierarchy = "start_time"
    actions = ["cancel_selected"]

    @admin.display(description="Starts (calendar time)", ordering="start_time")
    def local_start(self, obj):
        return obj.start_time.astimezone(obj.calendar.tz).strftime("%a %Y-%m-%d %H:%M %Z")

    @admin.action(description="Cancel selected appointments (frees their slots)", permissions=["cancel"])
    def cancel_selected(self, request, queryset):
        count = queryset.exclude(status=SandboxAppointment.Status.CANCELLED).update(
            status=SandboxAppointment.Status.CANCELLED
        )
        self.message_user(request, f"Cancelled {count} appointment(s).")

    def has_cancel_permission(self, request):
        return request.user.has_perm("integrations.change_sandboxappointment")


@admin.register(SandboxWorkflowEnrolment)
class SandboxWorkflowEnrolmentAdmin(ViewOnlyAdmin):
    list_display = ["contact", "workflow_id", "enrolled_at", "event_start_time"]
    list_filter = ["workflow_id", "enrolled_at"]
    search_fields = [
        "workflow_id",
        "contact__id",
        "contact__phone",
        "contact__first_name",
        "contact__last_name",
    ]
    list_select_related = ["contact"]


@admin.register(SandboxOpportunity)
class SandboxOpportunityAdmin(ViewOnlyAdmin):
    list_display = [
        "name",
        "contact",
        "pipeline_id",
        "pipeline_stage_id",
        "status",
        "monetary_value",
        "updated_at",
    ]
    list_filter = ["status", "pipeline_id"]
    search_fields = [
        "id",
        "name",
        "contact__id",
        "contact__phone",
        "contact__first_name",
        "contact__last_name",
    ]
    list_select_related = ["contact"]
