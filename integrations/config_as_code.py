"""Configuration as code: the operator-edited configuration as one YAML or JSON document.

`export_document()` writes every registered model; `plan_import(document)` validates a document
completely (every entry cleaned with the model's own validation, every reference resolvable) and
`apply_plan(plan)` applies it in one transaction: a bad document changes nothing and names the bad
entry, e.g. `agents[2].location: unknown location "loc_X"`.

Each model is described by one `ConfigSpec` in `SPECS` (a section name, the model, its natural
key, the exported fields, which of them reference another section). Adding a model is a few
declarative lines; sections are applied in `SPECS` order, so a model comes after what it references.

Rules of the format:
- Rows are matched by natural key (never by database id), so a document moves between deployments.
- A field an entry omits keeps its current value (a new row gets the model's default); export writes
  every field, so an exported document is complete.
- References hold the target's natural key; many-to-many references a sorted list of them.
- Secrets (GHL tokens) are never exported and are refused on import: set them in the admin.
- `prune` deletes rows a section no longer lists, only for sections present in the document.
"""

import json
from dataclasses import dataclass, field

import yaml
from django.core.exceptions import NON_FIELD_ERRORS, FieldDoesNotExist, ValidationError
from django.db import transaction
from django.db.models import ProtectedError

from integrations.models import Agent, GhlLocation, OutboundCampaign, PhoneNumber, RoutingRule, ToolDefinition

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ConfigSpec:
    section: str  # top-level key of the document, e.g. "agents"
    model: type
    key: str  # natural key: a unique field, e.g. "retell_agent_id"
    fields: tuple  # exported fields in document order (references included), key excluded
    refs: dict = field(default_factory=dict)  # foreign key field -> section of its target
    many: dict = field(default_factory=dict)  # many-to-many field -> section of its targets
    secrets: tuple = ()  # never exported; an entry naming one is refused

    @property
    def noun(self):
        return str(self.model._meta.verbose_name)


SPECS = [
    ConfigSpec(
        section="locations",
        model=GhlLocation,
        key="location_id",
        fields=("name", "timezone", "default_calendar_id"),
        secrets=("token",),
    ),
    ConfigSpec(
        section="agents",
        model=Agent,
        key="retell_agent_id",
        fields=(
            "name",
            "role",
            "location",
            "retell_agent_version",
            "is_active",
            "events_to_process",
            "sync_transcript_note",
            "sync_summary_note",
            "note_template",
            "post_call_tags",
            "tag_call_outcome",
            "workflow_id",
            "analysis_custom_fields",
            "create_unknown_contacts",
        ),
        refs={"location": "locations"},
    ),
    ConfigSpec(
        section="phone_numbers",
        model=PhoneNumber,
        key="number",
        fields=("label", "location", "default_agent"),
        refs={"location": "locations", "default_agent": "agents"},
    ),
    ConfigSpec(
        section="routing_rules",
        model=RoutingRule,
        key="name",
        fields=(
            "priority",
            "enabled",
            "description",
            "location",
            "dialled_numbers",
            "channel",
            "caller_numbers",
            "caller_prefixes",
            "contact_status",
            "tags_any",
            "tags_all",
            "custom_field_id",
            "custom_field_value",
            "days",
            "start_time",
            "end_time",
            "timezone",
            "action",
            "agent",
            "agent_version",
            "dynamic_variables",
            "metadata",
        ),
        refs={"location": "locations", "agent": "agents"},
    ),
    ConfigSpec(
        section="tool_definitions",
        model=ToolDefinition,
        key="name",
        fields=(
            "handler",
            "enabled",
            "description",
            "argument_schema",
            "config",
            "location",
            "agents",
            "expose_as_custom_function",
            "expose_over_mcp",
            "speak_during_execution",
            "execution_message",
            "speak_after_execution",
            "timeout_ms",
        ),
        refs={"location": "locations"},
        many={"agents": "agents"},
    ),
    ConfigSpec(
        section="outbound_campaigns",
        model=OutboundCampaign,
        key="slug",
        fields=(
            "name",
            "enabled",
            "location",
            "agent",
            "agent_version",
            "from_number",
            "call_days",
            "call_start",
            "call_end",
            "call_timezone",
            "variable_mapping",
            "include_custom_data",
            "max_calls_per_contact_per_day",
            "redelivery_window_minutes",
        ),
        refs={"location": "locations", "agent": "agents"},
        # The webhook secret is never exported: rotate it in the admin after importing a campaign.
        secrets=("secret_hash", "secret_hint"),
    ),
]


def spec_for(section):
    return next(spec for spec in SPECS if spec.section == section)


class ConfigError(Exception):
    """The document is invalid; `errors` lists every problem, each naming its entry."""

    def __init__(self, errors):
        super().__init__("\n".join(errors))
        self.errors = errors


# --- Export --------------------------------------------------------------------------------------


def export_document():
    """The whole configuration: {"version": 1, "<section>": [entries sorted by natural key], ...}."""
    document = {"version": FORMAT_VERSION}
    for spec in SPECS:
        rows = spec.model.objects.order_by(spec.key)
        if spec.refs:
            rows = rows.select_related(*spec.refs)
        if spec.many:
            rows = rows.prefetch_related(*spec.many)
        document[spec.section] = [export_entry(spec, row) for row in rows]
    return document


def export_entry(spec, obj):
    entry = {spec.key: getattr(obj, spec.key)}
    for name in spec.fields:
        entry[name] = _exported_value(spec, obj, name)
    return entry


def _exported_value(spec, obj, name):
    if name in spec.refs:
        target = getattr(obj, name)
        return getattr(target, spec_for(spec.refs[name]).key) if target is not None else None
    if name in spec.many:
        target_key = spec_for(spec.many[name]).key
        if obj.pk is None:
            return []
        return sorted(getattr(target, target_key) for target in getattr(obj, name).all())
    model_field = spec.model._meta.get_field(name)
    value = model_field.value_from_object(obj)
    if value is None or isinstance(value, str | bool | int | float | list | dict):
        return value
    return model_field.value_to_string(obj)  # dates, decimals, uuids: their canonical text


def dump(document, fmt):
    """The document as text: "yaml" (multi-line strings as literal blocks) or "json"."""
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper, value):
    style = "|" if "\n" in value and not value.endswith(" ") else None  # note templates stay readable
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def load(text, fmt):
    """Parse a document; ConfigError when it is not YAML/JSON."""
    try:
        return json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError([f"not valid {fmt.upper()}: {exc}"]) from None


# --- Import: validate everything into a plan -----------------------------------------------------


@dataclass
class EntryPlan:
    spec: ConfigSpec
    key: str
    action: str  # create | update | unchanged | delete
    instance: object
    refs: dict = field(default_factory=dict)  # field -> target natural key (or None)
    many: dict = field(default_factory=dict)  # field -> [target natural keys]
    changes: dict = field(default_factory=dict)  # field -> (before, after)


@dataclass
class ImportPlan:
    entries: list

    def count(self, action):
        return sum(1 for entry in self.entries if entry.action == action)

    @property
    def changed(self):
        return [entry for entry in self.entries if entry.action != "unchanged"]


def plan_import(document, *, prune=False):
    """Validate `document` against the database; an ImportPlan, or ConfigError listing every problem."""
    errors = []
    if not isinstance(document, dict):
        raise ConfigError(["the document must be a mapping of sections (locations:, agents:, ...)"])
    version = document.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        errors.append(f"version: unsupported format version {version!r} (this server reads {FORMAT_VERSION})")
    known = [spec.section for spec in SPECS]
    for section in document:
        if section != "version" and section not in known:
            errors.append(f"{section}: unknown section (known: {', '.join(known)})")

    present = [spec for spec in SPECS if spec.section in document]
    entries = {spec.section: _entries(spec, document[spec.section], errors) for spec in present}
    existing = {spec.section: _existing(spec) for spec in SPECS}
    # What each section holds after the import: the document's keys, plus the database's unless pruned.
    final_keys = {}
    for spec in SPECS:
        keys = set(entries.get(spec.section, {}))
        if spec.section not in entries or not prune:
            keys |= set(existing[spec.section])
        final_keys[spec.section] = keys

    plans = []
    for spec in present:
        for key, (where, raw) in entries[spec.section].items():
            plan = _plan_entry(spec, key, where, raw, existing[spec.section].get(key), final_keys, errors)
            if plan is not None:
                plans.append(plan)
        if prune:
            for key, obj in existing[spec.section].items():
                if key not in entries[spec.section]:
                    plans.append(EntryPlan(spec, key, "delete", obj))
    _check_kept_rows_references(existing, entries, prune, final_keys, errors)
    if errors:
        raise ConfigError(errors)
    return ImportPlan(plans)


def _entries(spec, raw_entries, errors):
    """{natural key: (where, entry)} for a section, after the shape checks."""
    if raw_entries is None:
        return {}
    if not isinstance(raw_entries, list):
        errors.append(f"{spec.section}: must be a list of entries")
        return {}
    allowed = {spec.key, *spec.fields}
    found = {}
    for index, raw in enumerate(raw_entries):
        where = f"{spec.section}[{index}]"
        if not isinstance(raw, dict):
            errors.append(f"{where}: must be a mapping of fields")
            continue
        for name in raw:
            if name in spec.secrets:
                errors.append(f"{where}.{name}: secrets are not imported; set it in the admin")
            elif name not in allowed:
                errors.append(f'{where}: unknown field "{name}"')
        key = raw.get(spec.key)
        if not isinstance(key, str) or not key.strip():
            errors.append(f"{where}.{spec.key}: required (a non-empty string)")
            continue
        if key in found:
            errors.append(f'{where}.{spec.key}: duplicate "{key}" (also {found[key][0]})')
            continue
        found[key] = (where, raw)
    return found


def _existing(spec):
    rows = spec.model.objects.all()
    if spec.refs:
        rows = rows.select_related(*spec.refs)
    if spec.many:
        rows = rows.prefetch_related(*spec.many)
    return {getattr(row, spec.key): row for row in rows}


def _plan_entry(spec, key, where, raw, current, final_keys, errors):
    before = export_entry(spec, current) if current is not None else None
    instance = current if current is not None else spec.model()
    setattr(instance, spec.key, key)
    plan = EntryPlan(spec, key, "create" if current is None else "update", instance)
    problems = []
    for name in spec.fields:
        if name not in raw:
            continue
        value = raw[name]
        if name in spec.refs:
            plan.refs[name] = _resolve_ref(spec, name, value, where, final_keys, problems)
        elif name in spec.many:
            plan.many[name] = _resolve_many(spec, name, value, where, final_keys, problems)
        else:
            model_field = spec.model._meta.get_field(name)
            try:
                setattr(instance, model_field.attname, model_field.to_python(value))
            except ValidationError as exc:
                problems.append(f"{where}.{name}: {' '.join(exc.messages)}")
    for name in (*spec.refs, *spec.many):
        kept = before[name] if before is not None and name not in raw else None  # omitted: stays as is
        target = spec_for(spec.refs.get(name) or spec.many.get(name))
        for value in kept if isinstance(kept, list) else [kept]:
            if value is not None and value not in final_keys[target.section]:
                problems.append(f'{where}.{name}: {target.noun} "{value}" is deleted by this import')
    try:
        # References are checked above against the document and the database (a target may be
        # created by this same import, so it has no id yet): the model validates everything else.
        instance.full_clean(exclude=[*spec.refs, *spec.many])
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            label = where if name == NON_FIELD_ERRORS else f"{where}.{name}"
            problems.append(f"{label}: {' '.join(messages)}")
    if problems:
        errors.extend(dict.fromkeys(problems))  # a field failing both to_python and full_clean: once
        return None
    if before is not None:
        after = {**before, **_plain_values(spec, instance, raw), **plan.refs, **plan.many}
        plan.changes = {
            name: (before[name], after[name]) for name in spec.fields if before[name] != after[name]
        }
        plan.action = "update" if plan.changes else "unchanged"
    return plan


def _plain_values(spec, instance, raw):
    return {
        name: _exported_value(spec, instance, name)
        for name in spec.fields
        if name in raw and name not in spec.refs and name not in spec.many
    }


def _resolve_ref(spec, name, value, where, final_keys, problems):
    target = spec_for(spec.refs[name])
    if value is None:
        if not spec.model._meta.get_field(name).null:
            problems.append(f"{where}.{name}: required")
        return None
    if not isinstance(value, str) or value not in final_keys[target.section]:
        problems.append(f'{where}.{name}: unknown {target.noun} "{value}"')
    return value


def _resolve_many(spec, name, value, where, final_keys, problems):
    target = spec_for(spec.many[name])
    if not isinstance(value, list):
        problems.append(f"{where}.{name}: must be a list of {target.section} keys")
        return []
    for item in value:
        if not isinstance(item, str) or item not in final_keys[target.section]:
            problems.append(f'{where}.{name}: unknown {target.noun} "{item}"')
    return sorted(item for item in value if isinstance(item, str))


def _check_kept_rows_references(existing, entries, prune, final_keys, errors):
    """Rows the document does not mention stay as they are: they must not point at pruned rows."""
    for spec in SPECS:
        listed = entries.get(spec.section, {})
        if spec.section in entries and prune:
            continue  # every kept row of this section is in the document, checked entry by entry
        for key, row in existing[spec.section].items():
            if key in listed:
                continue
            for name in (*spec.refs, *spec.many):
                target = spec_for(spec.refs.get(name) or spec.many[name])
                values = _exported_value(spec, row, name)
                for value in values if isinstance(values, list) else [values]:
                    if value is not None and value not in final_keys[target.section]:
                        errors.append(
                            f'{target.section}: cannot delete "{value}": {spec.noun} "{key}" still uses it '
                            f"(list it in {spec.section} too, or change it)"
                        )


# --- Import: apply -------------------------------------------------------------------------------


@transaction.atomic
def apply_plan(plan):
    """Apply a validated plan in one transaction (dependencies first, deletions last, in reverse)."""
    saved = {}
    for entry in plan.entries:
        if entry.action == "delete":
            continue
        if entry.action in ("create", "update"):
            for name, target_key in entry.refs.items():
                setattr(entry.instance, name, _target(saved, entry.spec.refs[name], target_key))
            entry.instance.save()
        for name, target_keys in entry.many.items():
            if entry.action == "create" or name in entry.changes:
                getattr(entry.instance, name).set(
                    [_target(saved, entry.spec.many[name], k) for k in target_keys]
                )
        saved[(entry.spec.section, entry.key)] = entry.instance
    for entry in reversed([entry for entry in plan.entries if entry.action == "delete"]):
        try:
            entry.instance.delete()
        except ProtectedError as exc:  # a model outside the document still uses it
            users = ", ".join(sorted({str(obj) for obj in exc.protected_objects})[:5])
            raise ConfigError(
                [f'{entry.spec.section}: cannot delete "{entry.key}": still used by {users}']
            ) from None


def _target(saved, section, key):
    if key is None:
        return None
    if (section, key) in saved:
        return saved[(section, key)]
    spec = spec_for(section)
    return spec.model.objects.get(**{spec.key: key})


def describe(plan):
    """Human-readable diff lines: + created, ~ updated (field: before → after), - deleted."""
    lines = []
    for spec in SPECS:
        changed = [entry for entry in plan.changed if entry.spec is spec]
        if not changed:
            continue
        lines.append(f"{spec.section}:")
        for entry in changed:
            if entry.action == "create":
                lines.append(f"  + {entry.key}")
            elif entry.action == "delete":
                lines.append(f"  - {entry.key}")
            else:
                lines.append(f"  ~ {entry.key}")
                for name, (before, after) in entry.changes.items():
                    lines.append(f"      {name}: {_show(before)} → {_show(after)}")
    return lines


def _show(value, limit=80):
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def model_field_exists(model, name):
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def check_specs():
    """Problems in SPECS (a typo in a field name, a reference to a later section); [] when sound."""
    problems, seen = [], set()
    for spec in SPECS:
        for name in (spec.key, *spec.fields, *spec.secrets):
            if not model_field_exists(spec.model, name):
                problems.append(f"{spec.section}: {spec.model.__name__} has no field {name!r}")
        for name, section in {**spec.refs, **spec.many}.items():
            if name not in spec.fields:
                problems.append(f"{spec.section}: reference {name!r} is not in fields")
            if section not in seen:
                problems.append(f"{spec.section}.{name}: section {section!r} must come earlier in SPECS")
        if not spec.model._meta.get_field(spec.key).unique:
            problems.append(f"{spec.section}: natural key {spec.key!r} is not unique")
        seen.add(spec.section)
    return problems
