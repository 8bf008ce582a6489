import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from integrations.config_as_code import ConfigError, apply_plan, describe, load, plan_import
from integrations.management.commands.export_config import format_from_name


class Command(BaseCommand):
    help = (
        "Apply a configuration document written by export_config: create or update by natural key, "
        "validate everything first, apply in one transaction. A bad document changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="YAML or JSON file (by extension), or - for standard input")
        parser.add_argument("--format", choices=["yaml", "json"], help="override the extension")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="delete rows that a section present in the file no longer lists",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="validate and show the changes; apply nothing"
        )

    def handle(self, *args, **options):
        name = options["file"]
        fmt = options["format"] or format_from_name(name) or "yaml"  # YAML also reads JSON
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {name}: {exc}") from None
        try:
            plan = plan_import(load(text, fmt), prune=options["prune"])
            for line in describe(plan):
                self.stdout.write(line)
            if not options["dry_run"]:
                apply_plan(plan)
        except ConfigError as exc:
            problems = "\n".join(f"  {error}" for error in exc.errors)
            raise CommandError(f"invalid configuration, nothing was changed:\n{problems}") from None

        counts = (
            f"{plan.count('create')} created, {plan.count('update')} updated, "
            f"{plan.count('delete')} deleted, {plan.count('unchanged')} unchanged"
        )
        if options["dry_run"]:
            self.stdout.write(f"Import {name} (dry run): would be {counts}; nothing was changed.")
        else:
            self.stdout.write(f"Imported {name}: {counts}.")
