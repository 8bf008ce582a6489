import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from integrations.config_as_code import dump, export_document


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
        if output and output != "-":
            try:
                Path(output).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"cannot write {output}: {exc}") from None
            self.stdout.write(f"Exported {counts} to {output}.")
        else:
            self.stdout.write(text, ending="")
            # The document owns standard output; the summary goes to standard error.
            sys.stderr.write(f"Exported {counts}.\n")


def format_from_name(name):
    if not name:
        return None
    suffix = Path(name).suffix.lower()
    return {".json": "json", ".yaml": "yaml", ".yml": "yaml"}.get(suffix)
