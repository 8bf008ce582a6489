"""Contact tools: look up, create or update the caller, notes, tags, workflows and opportunities.

Every handler finds "the contact" the same way (`resolve_contact`): an explicit `contact_id`
argument, then the call's `contact_id` dynamic variable (set by inbound routing), then a phone
lookup (an explicit `phone` argument, else the caller's number).
"""

from integrations.phones import InvalidPhoneNumber, to_e164
from integrations.tools.registry import ToolError, handler

CONTACT_ID = {
    "type": "string",
    "maxLength": 64,
    "description": "GHL contact id. Usually omit it: the caller's record is found from the call.",
}
PHONE = {
    "type": "string",
    "maxLength": 32,
    "description": "Phone number with country code if possible. Omit to use the number the caller is "
    "calling from.",
}
NAME_FIELDS = {
    "first_name": {"type": "string", "maxLength": 100, "description": "Caller's first name."},
    "last_name": {"type": "string", "maxLength": 100, "description": "Caller's last name."},
    "email": {"type": "string", "maxLength": 254, "description": "Caller's email address."},
}
# Argument name → GHL contact field, for the fields a caller can reasonably give on the phone.
STANDARD_FIELDS = {
    "first_name": "firstName",
    "last_name": "lastName",
    "email": "email",
    "company_name": "companyName",
    "address": "address1",
    "city": "city",
    "state": "state",
    "postal_code": "postalCode",
    "country": "country",
    "date_of_birth": "dateOfBirth",
}


def resolve_contact(client, args, context, *, create=False):
    """The GHL contact id for this conversation, or ToolError("contact_not_found").

    With `create`, a caller we do not know is created (upserted) when they gave a name or email.
    """
    explicit = (args.get("contact_id") or "").strip()
    if explicit:
        return explicit
    phone = _phone(args.get("phone")) or context.caller_number
    # An explicit phone means "find the record for this number", even when routing found another.
    if context.contact_id and not args.get("phone"):
        return context.contact_id
    if phone:
        contact = client.find_contact_by_phone(phone)
        if contact and contact.get("id"):
            return contact["id"]
    fields = contact_fields(args)
    if create and (fields.get("firstName") or fields.get("email")) and (phone or fields.get("email")):
        if phone:
            fields["phone"] = phone
        contact, _created = client.upsert_contact(fields)
        return contact["id"]
    if create:
        raise ToolError(
            "contact_details_needed",
            "I don't have a record for you yet. Could I get your first and last name?",
        )
    raise ToolError(
        "contact_not_found",
        "I couldn't find a record for this phone number. What number did you use with us before?",
    )


def contact_fields(args):
    """GHL contact fields from tool arguments (only the ones given, whitespace trimmed)."""
    fields = {}
    for argument, ghl_field in STANDARD_FIELDS.items():
        value = args.get(argument)
        if isinstance(value, str) and value.strip():
            fields[ghl_field] = value.strip()
    return fields


def contact_summary(contact):
    """The contact as our tools return it: stable keys, no internal GHL noise."""
    name = contact.get("name") or " ".join(
        part for part in (contact.get("firstName"), contact.get("lastName")) if part
    )
    return {
        "id": contact.get("id", ""),
        "name": name or "",
        "first_name": contact.get("firstName") or "",
        "last_name": contact.get("lastName") or "",
        "email": contact.get("email") or "",
        "phone": contact.get("phone") or "",
        "tags": list(contact.get("tags") or []),
        "timezone": contact.get("timezone") or "",
    }


def _phone(value):
    if not value:
        return ""
    try:
        return to_e164(value)
    except InvalidPhoneNumber as exc:
        raise ToolError(
            "invalid_phone", "That phone number doesn't look complete. Could you say it again?"
        ) from exc


def _name_for(contact):
    summary = contact_summary(contact)
    return summary["first_name"] or summary["name"]


# --- lookup_contact ------------------------------------------------------------------------------


@handler(
    "lookup_contact",
    title="Look up a contact",
    description="Find the caller's record in the CRM by phone number (defaults to the number they are "
    "calling from). Returns their name, email, tags and timezone, or found=false.",
    arguments={"type": "object", "properties": {"phone": PHONE, "contact_id": CONTACT_ID}},
    side_effect=False,
)
def lookup_contact(client, args, config, context):
    explicit_phone = _phone(args.get("phone"))
    contact_id = (args.get("contact_id") or "").strip() or (context.contact_id if not explicit_phone else "")
    if contact_id:
        contact = client.get_contact(contact_id)
    else:
        phone = explicit_phone or context.caller_number
        if not phone:
            raise ToolError("phone_needed", "What's the phone number on your account?")
        contact = client.find_contact_by_phone(phone)
    if not contact:
        return {"found": False, "message": "I couldn't find a record for that phone number."}
    name = _name_for(contact)
    return {
        "found": True,
        "contact": contact_summary(contact),
        "message": f"I found the record for {name}." if name else "I found your record.",
    }


# --- upsert_contact ------------------------------------------------------------------------------


@handler(
    "upsert_contact",
    title="Create or update a contact",
    description="Save the caller's details (name, email, phone). Updates their existing record when "
    "there is one, otherwise creates it.",
    arguments={
        "type": "object",
        "properties": {**NAME_FIELDS, "phone": PHONE, "contact_id": CONTACT_ID},
    },
    side_effect=True,
    idempotent=True,
)
def upsert_contact(client, args, config, context):
    fields = contact_fields(args)
    explicit_phone = _phone(args.get("phone"))
    if explicit_phone:
        fields["phone"] = explicit_phone
    contact_id = (args.get("contact_id") or "").strip() or context.contact_id
    if contact_id:
        if not fields:
            raise ToolError("nothing_to_update", "What details would you like me to save?")
        contact = client.update_contact(contact_id, fields)
        created = False
    else:
        if context.caller_number:
            fields.setdefault("phone", context.caller_number)
        if not fields.get("phone") and not fields.get("email"):
            raise ToolError("phone_or_email_needed", "What's the best phone number or email to reach you?")
        contact, created = client.upsert_contact(fields)
    return {
        "contact_id": contact.get("id", contact_id),
        "created": created,
        "contact": contact_summary(contact),
        "message": "Thanks, I've saved your details.",
    }


# --- update_contact_fields -----------------------------------------------------------------------


def _update_fields_schema(config):
    properties = {
        "first_name": NAME_FIELDS["first_name"],
        "last_name": NAME_FIELDS["last_name"],
        "email": NAME_FIELDS["email"],
        "company_name": {"type": "string", "maxLength": 200},
        "address": {"type": "string", "maxLength": 200, "description": "Street address."},
        "city": {"type": "string", "maxLength": 100},
        "state": {"type": "string", "maxLength": 100},
        "postal_code": {"type": "string", "maxLength": 20},
        "country": {"type": "string", "maxLength": 2, "description": "Two-letter country code, e.g. US."},
        "date_of_birth": {"type": "string", "format": "date", "description": "YYYY-MM-DD."},
    }
    for argument, field in (config.get("custom_fields") or {}).items():
        properties[argument] = {
            "type": "string",
            "maxLength": 1000,
            "description": field.get("description") or f"Value for the {argument.replace('_', ' ')} field.",
        }
    properties["contact_id"] = CONTACT_ID
    return {"type": "object", "properties": properties}


@handler(
    "update_contact_fields",
    title="Update contact fields",
    description="Update details on the caller's record (address, email, company, and the custom fields "
    "configured for this tool). Only pass the fields the caller gave.",
    arguments=_update_fields_schema,
    config={
        "type": "object",
        "properties": {
            "custom_fields": {
                "type": "object",
                "description": "Argument name → GHL custom field: "
                '{"insurance": {"key": "contact.insurance"}} or {"id": "cf_..."}, '
                'with an optional "description" for the LLM.',
                "propertyNames": {"pattern": "^[A-Za-z0-9_]{1,64}$"},
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "minLength": 1},
                        "key": {"type": "string", "minLength": 1},
                        "description": {"type": "string"},
                    },
                    "oneOf": [{"required": ["id"]}, {"required": ["key"]}],
                    "additionalProperties": False,
                },
            }
        },
        "additionalProperties": False,
    },
    side_effect=True,
    idempotent=True,
)
def update_contact_fields(client, args, config, context):
    fields = contact_fields(args)
    custom = []
    for argument, field in (config.get("custom_fields") or {}).items():
        value = args.get(argument)
        if isinstance(value, str) and value.strip():
            target = {"id": field["id"]} if field.get("id") else {"key": field["key"]}
            custom.append({**target, "field_value": value.strip()})
    if custom:
        fields["customFields"] = custom
    if not fields:
        raise ToolError("nothing_to_update", "What would you like me to update?")
    contact_id = resolve_contact(client, args, context)
    client.update_contact(contact_id, fields)
    return {"contact_id": contact_id, "updated": sorted(fields), "message": "I've updated your details."}


# --- add_note ------------------------------------------------------------------------------------


@handler(
    "add_note",
    title="Add a note",
    description="Add a note to the caller's record, e.g. a request or detail staff should see.",
    arguments={
        "type": "object",
        "properties": {
            "body": {"type": "string", "minLength": 1, "maxLength": 5000, "description": "The note text."},
            "contact_id": CONTACT_ID,
        },
        "required": ["body"],
    },
    config={
        "type": "object",
        "properties": {
            "prefix": {
                "type": "string",
                "description": 'Text put before every note, e.g. "From the AI agent: ".',
            },
            "user_id": {"type": "string", "description": "GHL user the note is attributed to."},
        },
        "additionalProperties": False,
    },
    side_effect=True,
)
def add_note(client, args, config, context):
    contact_id = resolve_contact(client, args, context)
    body = (config.get("prefix") or "") + args["body"].strip()
    note = client.add_note(contact_id, body, user_id=config.get("user_id") or None)
    return {"note_id": note.get("id", ""), "contact_id": contact_id, "message": "I've added that note."}


# --- add_tags / remove_tags ----------------------------------------------------------------------


def _tags_schema(config):
    item = {"type": "string", "minLength": 1, "maxLength": 100}
    allowed = config.get("allowed_tags")
    if allowed:
        item = {"type": "string", "enum": list(allowed)}
    return {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": item, "minItems": 1, "maxItems": 20, "description": "Tags."},
            "contact_id": CONTACT_ID,
        },
        "required": ["tags"],
    }


TAGS_CONFIG = {
    "type": "object",
    "properties": {
        "allowed_tags": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "description": "Only these tags may be used (also enforced when the schema is overridden).",
        }
    },
    "additionalProperties": False,
}


def _checked_tags(args, config):
    tags = list(dict.fromkeys(tag.strip() for tag in args["tags"] if tag.strip()))
    allowed = config.get("allowed_tags")
    if allowed:
        refused = [tag for tag in tags if tag not in allowed]
        if refused:
            raise ToolError(
                "tag_not_allowed",
                "I can't use that tag.",
                refused=refused,
                allowed_tags=list(allowed),
            )
    if not tags:
        raise ToolError("tags_needed", "Which tag should I use?")
    return tags


@handler(
    "add_tags",
    title="Add tags",
    description="Tag the caller's record (keeps existing tags).",
    arguments=_tags_schema,
    config=TAGS_CONFIG,
    side_effect=True,
    idempotent=True,
)
def add_tags(client, args, config, context):
    tags = _checked_tags(args, config)
    contact_id = resolve_contact(client, args, context)
    client.add_tags(contact_id, tags)
    return {"contact_id": contact_id, "tags": tags, "message": "Done."}


@handler(
    "remove_tags",
    title="Remove tags",
    description="Remove tags from the caller's record.",
    arguments=_tags_schema,
    config=TAGS_CONFIG,
    side_effect=True,
    idempotent=True,
    destructive=True,
)
def remove_tags(client, args, config, context):
    tags = _checked_tags(args, config)
    contact_id = resolve_contact(client, args, context)
    client.remove_tags(contact_id, tags)
    return {"contact_id": contact_id, "tags": tags, "message": "Done."}


# --- add_to_workflow -----------------------------------------------------------------------------


@handler(
    "add_to_workflow",
    title="Add to a workflow",
    description="Enrol the caller in the configured follow-up workflow.",
    arguments={"type": "object", "properties": {"contact_id": CONTACT_ID}},
    config={
        "type": "object",
        "properties": {"workflow_id": {"type": "string", "minLength": 1}},
        "required": ["workflow_id"],
        "additionalProperties": False,
    },
    side_effect=True,
)
def add_to_workflow(client, args, config, context):
    contact_id = resolve_contact(client, args, context)
    client.add_to_workflow(contact_id, config["workflow_id"])
    return {
        "contact_id": contact_id,
        "workflow_id": config["workflow_id"],
        "message": "Done, you're all set.",
    }


# --- upsert_opportunity --------------------------------------------------------------------------

OPPORTUNITY_STATUSES = ["open", "won", "lost", "abandoned"]


@handler(
    "upsert_opportunity",
    title="Create or update an opportunity",
    description="Record the caller as an opportunity in the configured sales pipeline.",
    arguments={
        "type": "object",
        "properties": {
            "name": {
                "type": "string",
                "maxLength": 200,
                "description": "Short title, e.g. 'Invisalign consult'.",
            },
            "monetary_value": {
                "type": "number",
                "minimum": 0,
                "description": "Estimated value, if mentioned.",
            },
            "status": {"type": "string", "enum": OPPORTUNITY_STATUSES},
            "contact_id": CONTACT_ID,
        },
    },
    config={
        "type": "object",
        "properties": {
            "pipeline_id": {"type": "string", "minLength": 1},
            "pipeline_stage_id": {"type": "string"},
            "status": {"type": "string", "enum": OPPORTUNITY_STATUSES},
            "name": {"type": "string", "description": "Default opportunity name when the LLM gives none."},
        },
        "required": ["pipeline_id"],
        "additionalProperties": False,
    },
    side_effect=True,
    idempotent=True,
)
def upsert_opportunity(client, args, config, context):
    contact_id = resolve_contact(client, args, context)
    name = (args.get("name") or "").strip() or config.get("name") or "Phone enquiry"
    opportunity = client.upsert_opportunity(
        pipeline_id=config["pipeline_id"],
        contact_id=contact_id,
        name=name,
        status=args.get("status") or config.get("status") or "open",
        pipeline_stage_id=config.get("pipeline_stage_id") or None,
        monetary_value=args.get("monetary_value"),
    )
    return {
        "opportunity_id": opportunity.get("id", ""),
        "contact_id": contact_id,
        "message": "I've passed that on to the team.",
    }
