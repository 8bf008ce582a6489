"""A stateful fake of the GHL endpoints the post-call pipeline uses, at the HTTP seam (`responses`).

It keeps contacts, notes and tags in memory so tests can assert on what GHL would end up holding,
records every request, and can be told to fail the next N requests to a path (429 with rate-limit
headers, 5xx, 404, timeouts).
"""

import itertools
import json
import re
from dataclasses import dataclass, field

import requests
from django.conf import settings

from tests.conftest import fixture_json


@dataclass
class Failure:
    method: str
    pattern: re.Pattern
    status: int | None  # None: raise a timeout
    times: int
    headers: dict = field(default_factory=dict)
    body: dict = field(default_factory=dict)


class FakeGhl:
    def __init__(self, rsps):
        self.rsps = rsps
        self.base = settings.GHL_BASE_URL
        self.contacts = {}
        self.notes = {}  # note id -> {"id", "contactId", "body"}
        self.tags = {}  # contact id -> set
        self.workflows = []  # (contact id, workflow id)
        self.custom_fields = {}  # contact id -> {field id: value}
        self.failures = []
        self._ids = itertools.count(1)
        dana = fixture_json("ghl_contact")["contact"]
        self.add_contact(dana)
        for method in ("GET", "POST", "PUT", "DELETE"):
            rsps.add_callback(method, re.compile(re.escape(self.base) + r"/.*"), callback=self._handle)

    # --- test controls ---

    def add_contact(self, contact):
        self.contacts[contact["id"]] = dict(contact)
        self.tags.setdefault(contact["id"], set(contact.get("tags", [])))

    def fail(self, method, path_regex, status, *, times=1, headers=None, body=None):
        self.failures.append(
            Failure(method, re.compile(path_regex), status, times, headers or {}, body or {"message": "boom"})
        )

    @property
    def requests(self):
        return [(call.request.method, call.request.path_url) for call in self.rsps.calls]

    def count(self, method, path_regex):
        return sum(1 for m, p in self.requests if m == method and re.search(path_regex, p))

    def notes_for(self, contact_id):
        return [note for note in self.notes.values() if note["contactId"] == contact_id]

    # --- the fake API ---

    def _handle(self, request):
        path = request.path_url
        for failure in self.failures:
            if failure.times and failure.method == request.method and failure.pattern.search(path):
                failure.times -= 1
                if failure.status is None:
                    raise requests.exceptions.ReadTimeout("read timed out")
                return (
                    failure.status,
                    failure.headers,
                    json.dumps({"statusCode": failure.status, **failure.body}),
                )
        body = json.loads(request.body) if request.body else {}
        route = path.split("?")[0]
        for pattern, method, handler in self.routes:
            match = re.fullmatch(pattern, route)
            if match and method == request.method:
                return handler(self, request, body, *match.groups())
        return 404, {}, json.dumps({"statusCode": 404, "message": f"no route {request.method} {route}"})

    def _search(self, request, body):
        from urllib.parse import parse_qs, urlsplit

        number = parse_qs(urlsplit(request.url).query)["number"][0]
        found = next((c for c in self.contacts.values() if c.get("phone") == number), None)
        return 200, {}, json.dumps({"contact": found})

    def _get_contact(self, request, body, contact_id):
        if contact_id not in self.contacts:
            return 404, {}, json.dumps({"statusCode": 404, "message": "Contact not found"})
        return (
            200,
            {},
            json.dumps({"contact": {**self.contacts[contact_id], "tags": sorted(self.tags[contact_id])}}),
        )

    def _upsert(self, request, body):
        found = next((c for c in self.contacts.values() if c.get("phone") == body.get("phone")), None)
        if found:
            return 200, {}, json.dumps({"new": False, "contact": found})
        contact = {"id": f"c_new{next(self._ids)}", **body}
        self.add_contact(contact)
        return 201, {}, json.dumps({"new": True, "contact": contact})

    def _update_contact(self, request, body, contact_id):
        if contact_id not in self.contacts:
            return 404, {}, json.dumps({"statusCode": 404, "message": "Contact not found"})
        for item in body.get("customFields", []):
            self.custom_fields.setdefault(contact_id, {})[item["id"]] = item["field_value"]
        return 200, {}, json.dumps({"contact": self.contacts[contact_id]})

    def _add_note(self, request, body, contact_id):
        if contact_id not in self.contacts:
            return 404, {}, json.dumps({"statusCode": 404, "message": "Contact not found"})
        note = {"id": f"n_{next(self._ids)}", "contactId": contact_id, "body": body["body"]}
        self.notes[note["id"]] = note
        return 201, {}, json.dumps({"note": note})

    def _update_note(self, request, body, contact_id, note_id):
        if note_id not in self.notes:
            return 404, {}, json.dumps({"statusCode": 404, "message": "Note not found"})
        self.notes[note_id]["body"] = body["body"]
        return 200, {}, json.dumps({"note": self.notes[note_id]})

    def _list_notes(self, request, body, contact_id):
        return 200, {}, json.dumps({"notes": self.notes_for(contact_id)})

    def _add_tags(self, request, body, contact_id):
        if contact_id not in self.contacts:
            return 404, {}, json.dumps({"statusCode": 404, "message": "Contact not found"})
        self.tags[contact_id].update(body["tags"])
        return 201, {}, json.dumps({"tags": sorted(self.tags[contact_id])})

    def _workflow(self, request, body, contact_id, workflow_id):
        self.workflows.append((contact_id, workflow_id))
        return 200, {}, json.dumps({"succeded": True})

    routes = [
        (r"/contacts/search/duplicate", "GET", _search),
        (r"/contacts/upsert", "POST", _upsert),
        (r"/contacts/([^/]+)", "GET", _get_contact),
        (r"/contacts/([^/]+)", "PUT", _update_contact),
        (r"/contacts/([^/]+)/notes", "POST", _add_note),
        (r"/contacts/([^/]+)/notes", "GET", _list_notes),
        (r"/contacts/([^/]+)/notes/([^/]+)", "PUT", _update_note),
        (r"/contacts/([^/]+)/tags", "POST", _add_tags),
        (r"/contacts/([^/]+)/workflow/([^/]+)", "POST", _workflow),
    ]
