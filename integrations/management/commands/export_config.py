from pathlib import Path

from django.core.management.base import BaseCommand

from integrations.config_as_code import dump, export_document
from retellghl.cli import write_document


class Command(BaseCommand):
    help = (
        "Write the configuration (GHL locations without their tokens, agents, and every other registered "
        "section) as one YAML or JSON document, for import_config."
    )

    def add_arguments(self, parser):
        parser.add_argument("-o", "--output", help="file to write (default: standard output)")
        parser.add_argument(
            "--format", choices=["yaml", "json"], help="default: from the file's extension, else yaml"
        )

    def handle(self, *args, **options):
        output = options["output"]
        fmt = options["format"] or format_from_name(output) or "yaml"
        document = export_document()
        text = dump(document, fmt)
        counts = ", ".join(
            f"{len(rows)} {section}" for section, rows in document.items() if section != "version"
        )
        write_document(self, text, output, summary=counts)


def format_from_name(name):
    if not name:
        return None
    suffix = Path(name).suffix.lower()
    return {".json": "json", ".yaml": "yaml", ".yml": "yaml"}.get(suffix)
