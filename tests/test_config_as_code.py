"""export_config / import_config: the configuration as one document, applied all or nothing."""

import io
import json

import pytest
import yaml
from django.core.management import CommandError, call_command

from integrations.config_as_code import check_specs
from integrations.models import Agent, GhlLocation, OutboundCampaign, PhoneNumber, RoutingRule, ToolDefinition

TOKEN = "pit-secret-token-do-not-export"


@pytest.fixture
def configured(db):
    bright = GhlLocation.objects.create(
        location_id="loc_BrightDental1",
        name="Bright Dental",
        token=TOKEN,
        timezone="America/Los_Angeles",
        default_calendar_id="cal_Cleanings01",
    )
    GhlLocation.objects.create(location_id="loc_Annex", name="Annexe Café", timezone="Europe/Paris")
    Agent.objects.create(
        retell_agent_id="agent_reception",
        name="Ava",
        role=Agent.Role.RECEPTION,
        location=bright,
        post_call_tags=["ai-call"],
        workflow_id="wf_AfterCall",
        analysis_custom_fields={"cf_LastOutcome": "call_summary"},
        note_template="AI call {{ call.call_id }}\n{{ summary }}\n",
    )
    Agent.objects.create(
        retell_agent_id="agent_vip",
        name="VIP line",
        role=Agent.Role.VIP,
        location=bright,
        retell_agent_version=3,
        events_to_process=["call_analyzed"],
        create_unknown_contacts=True,
    )
    Agent.objects.create(
        retell_agent_id="agent_night", name="Night", role=Agent.Role.AFTER_HOURS, is_active=False
    )
    vip = Agent.objects.get(retell_agent_id="agent_vip")
    PhoneNumber.objects.create(number="+14155559999", label="Main line", location=bright)
    RoutingRule.objects.create(
        name="VIP callers",
        priority=10,
        tags_any=["vip"],
        contact_status="found",
        agent=vip,
        dynamic_variables={"vip_tier": '{{ custom.cf_Tier|default:"gold" }}'},
        metadata={"segment": "vip"},
    )
    booking = ToolDefinition.objects.create(
        name="book_cleaning",
        handler="book_appointment",
        description="Book a cleaning at a slot check_availability offered.",
        config={"calendar_id": "cal_Cleanings01", "appointment_title": "Cleaning - {contact_name}"},
        location=bright,
    )
    booking.agents.set([vip, Agent.objects.get(retell_agent_id="agent_reception")])
    campaign = OutboundCampaign(
        slug="new-leads", name="New leads", location=bright, agent=vip, from_number="+14155550100"
    )
    campaign.set_new_secret()
    campaign.save()


def export(*args):
    out = io.StringIO()
    call_command("export_config", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def import_(path, *args):
    out = io.StringIO()
    call_command("import_config", str(path), *args, stdout=out)
    return out.getvalue()


def import_failing(path, *args):
    with pytest.raises(CommandError) as error:
        import_(path, *args)
    return str(error.value)


def write(tmp_path, document, name="config.yaml"):
    path = tmp_path / name
    text = json.dumps(document) if name.endswith(".json") else yaml.safe_dump(document, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


CONFIG_MODELS = (GhlLocation, Agent, PhoneNumber, RoutingRule, ToolDefinition, OutboundCampaign)


def snapshot():
    return tuple(list(model.objects.order_by("pk").values()) for model in CONFIG_MODELS)


def delete_all_configuration():
    for model in reversed(CONFIG_MODELS):  # referencing rows first: the references PROTECT
        model.objects.all().delete()


def test_the_specs_match_the_models():
    assert check_specs() == []


@pytest.mark.django_db
def test_export_writes_every_field_by_natural_key_and_never_a_token(configured):
    text = export()
    document = yaml.safe_load(text)
    assert TOKEN not in text and "token" not in text
    assert document["version"] == 1
    assert document["locations"] == [
        {
            "location_id": "loc_Annex",
            "name": "Annexe Café",
            "timezone": "Europe/Paris",
            "default_calendar_id": "",
        },
        {
            "location_id": "loc_BrightDental1",
            "name": "Bright Dental",
            "timezone": "America/Los_Angeles",
            "default_calendar_id": "cal_Cleanings01",
        },
    ]
    assert [agent["retell_agent_id"] for agent in document["agents"]] == [
        "agent_night",
        "agent_reception",
        "agent_vip",
    ]
    assert document["agents"][1] == {
        "retell_agent_id": "agent_reception",
        "name": "Ava",
        "role": "reception",
        "location": "loc_BrightDental1",
        "retell_agent_version": None,
        "is_active": True,
        "events_to_process": ["call_ended", "call_analyzed"],
        "sync_transcript_note": True,
        "sync_summary_note": True,
        "note_template": "AI call {{ call.call_id }}\n{{ summary }}\n",
        "post_call_tags": ["ai-call"],
        "tag_call_outcome": True,
        "workflow_id": "wf_AfterCall",
        "analysis_custom_fields": {"cf_LastOutcome": "call_summary"},
        "create_unknown_contacts": False,
    }
    assert "note_template: |\n    AI call {{ call.call_id }}\n" in text  # templates read as written
    assert document["agents"][0]["location"] is None


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["config.yaml", "config.json"])
def test_round_trip_export_import_into_an_empty_database_export(configured, tmp_path, name):
    path = tmp_path / name
    out = io.StringIO()
    call_command("export_config", "-o", str(path), stdout=out)
    assert out.getvalue() == (
        f"Exported 2 locations, 3 agents, 1 phone_numbers, 1 routing_rules, 1 tool_definitions, "
        f"1 outbound_campaigns to {path}.\n"
    )
    first = path.read_text(encoding="utf-8")
    if name.endswith(".json"):
        assert json.loads(first)["version"] == 1

    delete_all_configuration()
    output = import_(path)
    assert output.splitlines()[-1] == f"Imported {path}: 9 created, 0 updated, 0 deleted, 0 unchanged."
    assert export("--format", "json" if name.endswith(".json") else "yaml") == first
    assert GhlLocation.objects.get(location_id="loc_BrightDental1").token == ""  # set it in the admin


@pytest.mark.django_db
def test_importing_the_same_document_again_changes_nothing(configured, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(export(), encoding="utf-8")
    before = snapshot()
    output = import_(path)
    assert output == f"Imported {path}: 0 created, 0 updated, 0 deleted, 9 unchanged.\n"
    assert snapshot() == before  # not even updated_at moved
    assert GhlLocation.objects.get(location_id="loc_BrightDental1").token == TOKEN  # tokens untouched


@pytest.mark.django_db
def test_dry_run_shows_the_diff_and_changes_nothing(configured, tmp_path):
    document = yaml.safe_load(export())
    document["agents"][1]["name"] = "Ava (front desk)"
    document["agents"][1]["location"] = "loc_Annex"
    document["agents"][1]["post_call_tags"] = ["ai-call", "front-desk"]
    document["agents"].append({"retell_agent_id": "agent_new", "name": "New", "location": "loc_Annex"})
    del document["agents"][0]  # agent_night
    path = write(tmp_path, document)
    before = snapshot()

    output = import_(path, "--dry-run", "--prune")
    assert output.splitlines() == [
        "agents:",
        "  ~ agent_reception",
        '      name: "Ava" → "Ava (front desk)"',
        '      location: "loc_BrightDental1" → "loc_Annex"',
        '      post_call_tags: ["ai-call"] → ["ai-call", "front-desk"]',
        "  + agent_new",
        "  - agent_night",
        f"Import {path} (dry run): would be 1 created, 1 updated, 1 deleted, 7 unchanged; "
        "nothing was changed.",
    ]
    assert snapshot() == before

    import_(path, "--prune")
    reception = Agent.objects.get(retell_agent_id="agent_reception")
    assert reception.name == "Ava (front desk)" and reception.location.location_id == "loc_Annex"
    assert Agent.objects.get(retell_agent_id="agent_new").events_to_process == ["call_ended", "call_analyzed"]
    assert not Agent.objects.filter(retell_agent_id="agent_night").exists()


@pytest.mark.django_db
def test_an_invalid_document_changes_nothing_and_names_every_bad_entry(configured, tmp_path):
    document = yaml.safe_load(export())
    document["locations"][0]["name"] = "Renamed (must not be applied)"
    document["locations"].append({"location_id": "loc_Bad", "name": "Bad", "timezone": "Mars/Olympus"})
    document["locations"].append({"location_id": "loc_Tok", "name": "T", "token": "pit-x"})
    document["agents"][0]["location"] = "loc_X"
    document["agents"][1]["retell_agent_version"] = "three"
    document["agents"][2]["wrkflow_id"] = "wf_typo"
    document["agents"].append({"retell_agent_id": "agent_vip", "name": "Again"})
    document["agents"].append({"name": "No key"})
    document["agents"].append({"retell_agent_id": "agent_x", "name": "", "role": "janitor"})
    document["routing"] = []
    document["version"] = 2
    before = snapshot()

    message = import_failing(write(tmp_path, document))
    assert message.splitlines() == [
        "invalid configuration, nothing was changed:",
        "  version: unsupported format version 2 (this server reads 1)",
        "  routing: unknown section (known: locations, agents, phone_numbers, routing_rules, "
        "tool_definitions, outbound_campaigns)",
        "  locations[3].token: secrets are not imported; set it in the admin",
        '  agents[2]: unknown field "wrkflow_id"',
        '  agents[3].retell_agent_id: duplicate "agent_vip" (also agents[2])',
        "  agents[4].retell_agent_id: required (a non-empty string)",
        "  locations[2].timezone: 'Mars/Olympus' is not an IANA timezone (e.g. America/New_York)",
        '  agents[0].location: unknown GHL location "loc_X"',
        "  agents[1].retell_agent_version: “three” value must be an integer.",
        "  agents[5].name: This field cannot be blank.",
        "  agents[5].role: Value 'janitor' is not a valid choice.",
    ]
    assert snapshot() == before


@pytest.mark.django_db
def test_references_may_point_at_rows_created_by_the_same_document(db, tmp_path):
    document = {
        "version": 1,
        "agents": [
            {"retell_agent_id": "agent_a", "name": "A", "location": "loc_new"}
        ],  # order does not matter
        "locations": [{"location_id": "loc_new", "name": "New"}],
    }
    import_(write(tmp_path, document, "config.json"))
    assert Agent.objects.get().location == GhlLocation.objects.get(location_id="loc_new")


@pytest.mark.django_db
def test_omitted_fields_keep_their_values(configured, tmp_path):
    path = write(tmp_path, {"agents": [{"retell_agent_id": "agent_reception", "name": "Ava 2"}]})
    assert "1 updated, 0 deleted, 0 unchanged" in import_(path)
    agent = Agent.objects.get(retell_agent_id="agent_reception")
    assert agent.name == "Ava 2" and agent.workflow_id == "wf_AfterCall" and agent.location is not None
    assert Agent.objects.count() == 3  # no --prune: the others stay


@pytest.mark.django_db
def test_prune_refuses_to_delete_a_location_an_agent_still_uses(configured, tmp_path):
    path = write(tmp_path, {"locations": [{"location_id": "loc_Annex", "name": "Annexe Café"}]})
    message = import_failing(path, "--prune")
    assert (
        'locations: cannot delete "loc_BrightDental1": agent "agent_reception" still uses it '
        "(list it in agents too, or change it)"
    ) in message
    assert GhlLocation.objects.count() == 2

    # An agent listed without its location keeps it: pruning that location is refused by name.
    path = write(
        tmp_path,
        {
            "locations": [{"location_id": "loc_Annex", "name": "Annexe Café"}],
            "agents": [{"retell_agent_id": "agent_reception", "name": "Ava"}],
        },
    )
    message = import_failing(path, "--prune")
    assert 'agents[0].location: GHL location "loc_BrightDental1" is deleted by this import' in message

    # Listing every section: rows not listed are pruned referencing ones first, then the location.
    empty = {
        "agents": [],
        "phone_numbers": [],
        "routing_rules": [],
        "tool_definitions": [],
        "outbound_campaigns": [],
    }
    path = write(tmp_path, {"locations": [{"location_id": "loc_Annex", "name": "Annexe Café"}], **empty})
    assert "0 created, 0 updated, 8 deleted, 1 unchanged" in import_(path, "--prune")
    assert list(GhlLocation.objects.values_list("location_id", flat=True)) == ["loc_Annex"]


@pytest.mark.django_db
def test_unreadable_files_are_command_errors(db, tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        import_(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("agents: [\n", encoding="utf-8")
    assert "not valid YAML" in import_failing(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n", encoding="utf-8")
    assert "the document must be a mapping" in import_failing(listed)


@pytest.fixture
def many_to_many_specs(monkeypatch):
    """No config model on this branch has a many-to-many field yet (tool definitions will: agents),
    so exercise that part of the registry with Django's own users and groups."""
    from django.contrib.auth.models import Group, User

    from integrations import config_as_code

    specs = [
        config_as_code.ConfigSpec(section="groups", model=Group, key="name", fields=()),
        config_as_code.ConfigSpec(
            section="users",
            model=User,
            key="username",
            fields=("password", "email", "groups"),
            many={"groups": "groups"},
        ),
    ]
    monkeypatch.setattr(config_as_code, "SPECS", specs)
    assert config_as_code.check_specs() == []
    support, sales = Group.objects.create(name="support"), Group.objects.create(name="sales")
    ana = User.objects.create(username="ana", password="x", email="ana@example.com")
    ana.groups.set([support, sales])
    User.objects.create(username="bo", password="y")
    return Group, User


@pytest.mark.django_db
def test_many_to_many_references_round_trip_diff_and_validate(many_to_many_specs, tmp_path):
    group_model, user_model = many_to_many_specs
    text = export()
    document = yaml.safe_load(text)
    assert document["users"][0] == {
        "username": "ana",
        "password": "x",
        "email": "ana@example.com",
        "groups": ["sales", "support"],
    }
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    user_model.objects.all().delete()
    group_model.objects.all().delete()
    import_(path)
    assert export() == text

    document["users"][1]["groups"] = ["support"]
    document["users"][0]["groups"] = ["support", "nope"]
    assert 'users[0].groups: unknown group "nope"' in import_failing(write(tmp_path, document))
    document["users"][0]["groups"] = ["support"]
    output = import_(write(tmp_path, document))
    assert '      groups: ["sales", "support"] → ["support"]' in output
    assert '      groups: [] → ["support"]' in output
    assert list(user_model.objects.get(username="bo").groups.values_list("name", flat=True)) == ["support"]


@pytest.mark.django_db
def test_the_readme_example_is_a_complete_valid_document(tmp_path):
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    operations = readme[readme.index("## Operations") :]
    example = operations[operations.index("```yaml\n") + 8 :]
    example = example[: example.index("```")]
    path = tmp_path / "example.yaml"
    path.write_text(example, encoding="utf-8")
    import_(path)
    assert yaml.safe_load(export()) == yaml.safe_load(example)  # every field shown, nothing invented
