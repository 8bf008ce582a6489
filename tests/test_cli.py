"""retellghl.cli: the progress printer of the operations commands and their date options."""

import io
from datetime import UTC, datetime, timedelta

import pytest

from retellghl.cli import Progress, format_seconds, parse_when


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_plain_output_prints_a_line_every_n_items_or_seconds_and_at_the_end():
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, "Backfill", total=250, tty=False, every=100, interval=30, clock=clock)
    for _ in range(250):
        clock.now += 0.1
        progress.advance()
    progress.finish()
    assert out.getvalue().splitlines() == [
        "Backfill: 1/250  0%",  # the first item: the run has started
        "Backfill: 101/250  40%  10.0/s  ETA 15s",
        "Backfill: 201/250  80%  10.0/s  ETA 5s",
        "Backfill: 250/250  100%  10.0/s",
    ]


def test_plain_output_also_prints_after_the_interval_when_items_are_slow():
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, "Fetch", total=None, tty=False, every=100, interval=10, clock=clock)
    progress.advance()
    clock.now = 12
    progress.advance()
    clock.now = 13
    progress.advance()  # neither 100 items nor 10 s since the last line
    progress.finish()
    assert out.getvalue().splitlines() == ["Fetch: 1", "Fetch: 2  0.2/s", "Fetch: 3  0.2/s"]


def test_terminal_output_rewrites_one_line_and_logs_above_it():
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, "Backfill", total=4, tty=True, clock=clock)
    clock.now = 2
    progress.advance()
    progress.log("call_1: wrote note n_1")
    clock.now = 4
    progress.advance()
    progress.set_status("1 waiting to be retried")
    progress.finish()
    text = out.getvalue()
    assert "\n" not in text.rstrip("\n").replace("call_1: wrote note n_1\n", "")
    frames = [frame for frame in text.split("\r") if frame.strip()]
    assert frames[0] == "Backfill: 1/4  25%  0.5/s  ETA 6s"
    assert "call_1: wrote note n_1\n" in text
    assert frames[-1].rstrip() == "Backfill: 2/4  50%  0.5/s  ETA 4s  1 waiting to be retried"
    assert text.endswith("\n")


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 59.4, 61, 3599, 3600, 7380)] == [
        "0s",
        "59s",
        "1m01s",
        "59m59s",
        "1h00m",
        "2h03m",
    ]


@pytest.mark.django_db
def test_parse_when(settings):
    now = datetime(2026, 12, 3, 16, 30, tzinfo=UTC)
    assert parse_when("24h", now=now) == now - timedelta(hours=24)
    assert parse_when("7d", now=now) == now - timedelta(days=7)
    assert parse_when("90m", now=now) == now - timedelta(minutes=90)
    assert parse_when("2026-12-01") == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_when("2026-12-01", end=True) == datetime(2026, 12, 2, tzinfo=UTC)  # --until includes the day
    assert parse_when("2026-12-01T08:00:00Z") == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert parse_when("2026-12-01T08:00:00-08:00") == datetime(2026, 12, 1, 16, tzinfo=UTC)
    settings.TIME_ZONE = "America/Los_Angeles"
    assert parse_when("2026-12-01T08:00") == datetime(2026, 12, 1, 16, tzinfo=UTC)  # naive: server time zone
    with pytest.raises(ValueError, match="is not a date"):
        parse_when("last tuesday")
