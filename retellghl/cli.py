"""Helpers shared by the operations commands: a progress printer and date/time options.

No dependencies: a progress line is a few dozen lines of code, and the commands must also print
readable logs when run from cron or CI (not a terminal).
"""

import argparse
import re
import time
from datetime import datetime, timedelta
from pathlib import Path

from django.core.management.base import CommandError, OutputWrapper
from django.utils import timezone

_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text, *, end=False, now=None):
    """An instant from an operator's option value.

    Accepts an ISO time (`2026-12-03T08:00`, `2026-12-03T16:00:00Z`; naive means the server's
    TIME_ZONE), a date (`2026-12-03`: its start, or with `end=True` the start of the next day, so an
    `--until` date includes that whole day), or a time ago (`90m`, `24h`, `7d`, `2w`).
    Raises ValueError with a message fit for the operator.
    """
    text = (text or "").strip()
    now = now or timezone.now()
    match = _RELATIVE.match(text)
    if match:
        return now - timedelta(**{_UNITS[match[2]]: int(match[1])})
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = datetime.fromisoformat(text)
        moment = timezone.make_aware(day + timedelta(days=1) if end else day)
        return moment
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date (2026-12-03), an ISO time or a time ago (24h, 7d)"
        ) from None
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


def since_option(text):
    """argparse `type=` for --since."""
    try:
        return parse_when(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def until_option(text):
    """argparse `type=` for --until (a bare date includes the whole day)."""
    try:
        return parse_when(text, end=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text):
    """argparse `type=` for counts such as --limit: 0 or less would silently mean "no limit"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def write_document(command, text, output, *, summary):
    """Write an export command's document to the file `output`, or to standard output when it is None
    or "-". The one-line summary ("Exported <summary>.") follows on standard output after a file, and
    on standard error otherwise: then the document owns standard output, ready to pipe."""
    if output and output != "-":
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc}") from None
        command.stdout.write(f"Exported {summary} to {output}.")
    else:
        command.stdout.write(text, ending="")
        command.stderr.write(f"Exported {summary}.")


def format_seconds(seconds):
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Progress of a long command: count/total, rate and ETA.

    On a terminal, one line rewritten in place (at most ten times a second). Anywhere else (a log
    file, CI, a pipe), a plain line every `every` items or `interval` seconds, whichever comes
    first, and a last one at the end. `total` may be None (unknown: no percentage, no ETA).
    """

    def __init__(
        self, stream, label, *, total=None, tty=None, every=100, interval=10.0, clock=time.monotonic
    ):
        self.stream = stream
        self.label = label
        self.total = total
        self.tty = stream.isatty() if tty is None and hasattr(stream, "isatty") else bool(tty)
        self.every = every
        self.interval = interval
        self.clock = clock
        self.done = 0
        self.status = ""
        self._started = clock()
        self._last_drawn_at = None
        self._last_drawn_count = None
        self._width = 0

    def advance(self, count=1):
        self.done += count
        self._maybe_draw()

    def update(self, done, *, status=None):
        """Set the absolute count (e.g. finished tasks seen while polling) and an optional status."""
        self.done = done
        if status is not None:
            self.status = status
        self._maybe_draw()

    def set_status(self, status):
        """A short note after the numbers, e.g. "waiting for 2 retries"; "" clears it.

        Shown at once on a terminal; in plain mode with the next periodic line.
        """
        if status != self.status:
            self.status = status
            if self.tty:
                self._maybe_draw(force=True)
            elif status and self.clock() - (self._last_drawn_at or 0) >= self.interval:
                self._draw()

    def log(self, text):
        """Print a line of its own without garbling the progress line."""
        if self.tty and self._width:
            self._write("\r" + " " * self._width + "\r")
            self._width = 0
        self._write(text + "\n")
        if self.tty:
            self._draw()

    def finish(self):
        if self.tty:
            self._draw()
            self._write("\n")
        elif self._last_drawn_count != self.done:
            self._draw()

    def line(self):
        elapsed = self.clock() - self._started
        parts = [f"{self.done}/{self.total}" if self.total is not None else str(self.done)]
        if self.total:
            parts.append(f"{100 * self.done // self.total}%")
        if elapsed >= 1:  # a rate over a fraction of a second says nothing
            rate = self.done / elapsed
            parts.append(f"{rate:.1f}/s")
            if self.total is not None and 0 < self.done < self.total:
                parts.append(f"ETA {format_seconds((self.total - self.done) / rate)}")
        if self.status:
            parts.append(self.status)
        return f"{self.label}: " + "  ".join(parts)

    def _maybe_draw(self, force=False):
        now = self.clock()
        if self.tty:
            if force or self._last_drawn_at is None or now - self._last_drawn_at >= 0.1:
                self._draw()
            return
        due_by_count = self._last_drawn_count is None or self.done - self._last_drawn_count >= self.every
        due_by_time = self._last_drawn_at is None or now - self._last_drawn_at >= self.interval
        if force or due_by_count or (due_by_time and self.done != self._last_drawn_count):
            self._draw()

    def _draw(self):
        text = self.line()
        if self.tty:
            padding = " " * max(self._width - len(text), 0)
            self._write("\r" + text + padding)
            self._width = len(text)
        else:
            self._write(text + "\n")
        self._last_drawn_at = self.clock()
        self._last_drawn_count = self.done

    def _write(self, text):
        if isinstance(self.stream, OutputWrapper):
            self.stream.write(text, ending="")
        else:
            self.stream.write(text)
        if hasattr(self.stream, "flush"):
            self.stream.flush()
