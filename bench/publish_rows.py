"""How fast a publish of many rows is stored: `services.publish_many` in process, no server, no sockets.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench python -m bench.publish_rows --recipients 10000 --runs 7

Makes `--recipients` users with streams if they are missing (`publish-00000`..),
then times, each `--runs` times: one publish to all of them (a topic's fan-out),
and `--threads` threads each publishing a batch of `--batch` requests to one user
each, the same users in every thread (the HTTP bench's /batch, minus HTTP).
Prints the median of each. Without REDIS_URL the push after commit goes to the
in-process channel layer, where nobody listens: what is timed is the write.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from notifications import services
    from notifications.models import UserStream

    User = get_user_model()
    names = [f"publish-{i:05d}" for i in range(args.recipients)]
    with transaction.atomic():
        have = set(User.objects.filter(username__in=names).values_list("username", flat=True))
        User.objects.bulk_create([User(username=n, password="!unusable") for n in names if n not in have], batch_size=2000)
        ids = sorted(User.objects.filter(username__in=names).values_list("id", flat=True))
        UserStream.objects.bulk_create([UserStream(user_id=uid) for uid in ids], ignore_conflicts=True, batch_size=2000)

    def fan_out() -> None:
        services.publish_many([services.PublishRequest(ids, services.Content(title="to everyone", body="x" * 100))])

    batch_ids = ids[: args.batch]

    def batches() -> None:
        def one(thread: int) -> None:
            requests = [
                services.PublishRequest([uid], services.Content(title=f"item {thread}.{i}", body="x" * 100, data={"i": i}))
                for i, uid in enumerate(batch_ids)
            ]
            services.publish_many(requests)
            connection.close()

        workers = [threading.Thread(target=one, args=(t,)) for t in range(args.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    for name, run, rows in (
        (f"one publish to {len(ids)} recipients", fan_out, len(ids)),
        (f"{args.threads} threads x a batch of {len(batch_ids)}, same users", batches, args.threads * len(batch_ids)),
    ):
        run()  # warm-up
        seconds = []
        for _ in range(args.runs):
            started = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - started)
        median = statistics.median(seconds)
        print(
            f"{name}: median {median * 1000:.1f} ms ({min(seconds) * 1000:.1f}-{max(seconds) * 1000:.1f}),"
            f" {rows / median:,.0f} notifications/s"
        )


if __name__ == "__main__":
    main()
