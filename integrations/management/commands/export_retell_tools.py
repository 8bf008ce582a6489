"""Print the Retell custom-function JSON for an agent's tools, ready to paste into its LLM config."""

import json

from django.conf import settings
from django.core.management.base import BaseCommand

from integrations.models import Agent
from integrations.tools.retell_export import custom_functions_for_agent
from retellghl.cli import write_document


class Command(BaseCommand):
    help = (
        "Print the agent's enabled custom functions as Retell general_tools entries (a JSON list). "
        "Paste each into the Retell dashboard, or merge the list into the LLM's general_tools."
    )

    def add_arguments(self, parser):
        parser.add_argument("--agent", required=True, help="Retell agent id (agent_...)")
        parser.add_argument("--base-url", help="Public URL Retell calls (default: PUBLIC_BASE_URL)")
        parser.add_argument(
            "-o", "--output", help="file to write (default: standard output), as export_config"
        )
        parser.add_argument(
            "--wrap", action="store_true", help='Print {"general_tools": [...]} for the update-retell-llm API'
        )

    def handle(self, *args, agent, base_url=None, wrap=False, output=None, **options):
        base_url = (base_url or settings.PUBLIC_BASE_URL).rstrip("/")
        if not Agent.objects.filter(retell_agent_id=agent).exists():
            self.stderr.write(f"Note: no agent {agent} in the admin; listing the tools open to every agent.")
        if not base_url.startswith("https://"):
            self.stderr.write(
                f"Warning: {base_url} is not an https URL Retell can reach (set PUBLIC_BASE_URL)."
            )
        tools = custom_functions_for_agent(agent, base_url)
        text = json.dumps({"general_tools": tools} if wrap else tools, indent=2, ensure_ascii=False)
        write_document(self, text + "\n", output, summary=f"{len(tools)} custom function(s) for {agent}")
