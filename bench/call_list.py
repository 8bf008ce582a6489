"""Benchmark the operator UI's call list and dashboard queries on a large call log.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<a throwaway db> python bench/call_list.py --calls 100000

Seeds N synthetic calls (realistic column sizes: ~2 kB transcripts, dynamic variables, metadata) into
the database named by DATABASE_URL when it holds fewer, then times each list scenario (best of 5, in
milliseconds, including Django's own overhead) and prints the PostgreSQL plan's top line. Use a
throwaway database: it migrates it and never deletes anything.
"""

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retellghl.settings_test")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from calls import selectors  # noqa: E402
from calls.models import Call, GhlSyncTask  # noqa: E402
from integrations.models import Agent  # noqa: E402

WORDS = (
    "appointment cleaning tuesday afternoon insurance billing question reschedule cancel whitening "
    "crown filling emergency toothache referral parking hours address confirm thanks hello please"
).split()
NAMES = ["Dana Lee", "Sam Rivera", "Alex Kim", "Jordan Patel", "Maria Garcia", "Chris Nguyen", "Pat Murphy"]
RULES = ["returning-patient", "vip", "after-hours", "new-caller", "blocked"]


def seed(total):
    have = Call.objects.count()
    if have >= total:
        return have
    agents = [
        Agent.objects.get_or_create(
            retell_agent_id=f"agent_bench_{i}", defaults={"name": f"Bench agent {i}"}
        )[0]
        for i in range(8)
    ]
    rng = random.Random(42)
    now = timezone.now()
    batch = []
    for n in range(have, total):
        started = now - timedelta(seconds=rng.randint(0, 90 * 24 * 3600))
        agent = rng.choice(agents)
        direction = rng.choice(["inbound", "inbound", "outbound", "web"])
        turns = [
            f"{'Agent' if i % 2 == 0 else 'User'}: " + " ".join(rng.choices(WORDS, k=18)) for i in range(16)
        ]
        successful = rng.choice([True, True, False, None])
        batch.append(
            Call(
                call_id=f"call_bench_{n:08d}",
                agent=agent,
                retell_agent_id=agent.retell_agent_id,
                agent_name=agent.name,
                call_type="web_call" if direction == "web" else "phone_call",
                direction=direction,
                from_number=f"+1415{rng.randint(2000000, 9999999)}",
                to_number="+14155559999",
                status=rng.choice(["ended"] * 18 + ["not_connected", "error"]),
                started_at=started,
                ended_at=started + timedelta(seconds=40),
                duration_ms=rng.randint(5_000, 600_000),
                disconnection_reason=rng.choice(["agent_hangup", "user_hangup", "dial_no_answer"]),
                transcript="\n".join(turns),
                summary="Caller asked about " + " ".join(rng.choices(WORDS, k=6)),
                user_sentiment=rng.choice(["Positive", "Neutral", "Negative", "Unknown"]),
                call_successful=successful,
                call_analysis={"call_successful": successful},
                dynamic_variables={"customer_name": rng.choice(NAMES), "contact_id": f"c_{n}"},
                metadata={"routing_rule": rng.choices(RULES, weights=[40, 5, 20, 34, 1])[0]},
                ghl_contact_id=f"c_{n}",
                ghl_sync_status=rng.choices(["synced", "pending", "failed", "no_contact"], [90, 3, 1, 6])[0],
            )
        )
        if len(batch) == 2000:
            Call.objects.bulk_create(batch)
            batch = []
            print(f"  seeded {n + 1}", end="\r", flush=True)
    Call.objects.bulk_create(batch)
    failed = Call.objects.filter(ghl_sync_status="failed").values_list("pk", "call_id")[:500]
    GhlSyncTask.objects.bulk_create(
        [
            GhlSyncTask(
                call_id=pk, kind="note", dedupe_key=f"call:{cid}:note", status="failed", last_error="boom"
            )
            for pk, cid in failed
        ],
        ignore_conflicts=True,
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE")
    return Call.objects.count()


def best_ms(fn, runs=5):
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        timings.append((time.perf_counter() - start) * 1000)
    return min(timings), statistics.median(timings)


def list_page(filters, cursor=None):
    calls = selectors.call_list_queryset(filters)
    return lambda: selectors.call_page(calls, before=cursor)


def plan(filters):
    if connection.vendor != "postgresql":
        return ""
    calls = selectors.call_list_queryset(filters)[: selectors.PAGE_SIZE + 1]
    return calls.explain().splitlines()[0][:90]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    print(f"database: {connection.vendor}; calls: {seed(args.calls)}")

    agent = Agent.objects.order_by("pk").first()
    deep = Call.objects.order_by("-occurred_at", "-id")[50_000:50_001].get()
    since = timezone.now() - timedelta(days=7)
    scenarios = {
        "first page, no filter": {},
        "agent": {"agent": agent},
        "direction=outbound": {"direction": "outbound"},
        "sync=failed (1%)": {"ghl_sync_status": "failed"},
        "status=error (5%)": {"status": "error"},
        "routing rule 'blocked' (1%)": {"routing_rule": "blocked"},
        "sentiment + success": {"sentiment": "Negative", "success": "no"},
        "last 7 days": {"since": since},
        "search exact phone": {"q": Call.objects.values_list("from_number", flat=True).first()},
        "search digits '5550'": {"q": "5550"},
        "search call id": {"q": "call_bench_00012345"},
        "search name 'rivera'": {"q": "rivera"},
        "search two words 'sam rivera'": {"q": "sam rivera"},
        "search transcript 'toothache'": {"q": "toothache"},
        "search transcript (no hit) 'zebra'": {"q": "zebra"},
    }
    print(f"{'scenario':38} {'best ms':>8} {'median':>8}  plan")
    for name, filters in scenarios.items():
        best, median = best_ms(list_page(filters))
        print(f"{name:38} {best:8.1f} {median:8.1f}  {plan(filters)}")
    cursor = (deep.occurred_at, deep.pk)
    best, median = best_ms(list_page({}, cursor))
    print(f"{'page after 50,000 rows (keyset)':38} {best:8.1f} {median:8.1f}")

    now = timezone.now()
    tz = UTC
    for name, fn in {
        "dashboard: calls per day (14 d)": lambda: selectors.calls_per_day(days=14, now=now, tz=tz),
        "dashboard: agent rates (30 d)": lambda: selectors.agent_rates(since=now - timedelta(days=30)),
        "dashboard: sync attention": lambda: selectors.sync_attention(now=now),
    }.items():
        best, median = best_ms(fn)
        print(f"{name:38} {best:8.1f} {median:8.1f}")
    print(f"run at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


if __name__ == "__main__":
    main()
