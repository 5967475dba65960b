"""Bench fixtures in the bench database: users, API tokens, topics, subscriptions, in bulk.

`python -m bench.setup_data OUT.json --users 10000 --fanout 1000 --idle 100` (Django
set up from DATABASE_URL). Users are bench-00000.. with an unusable password; every
run issues fresh tokens (digests stored, secrets written to OUT.json only,
which lives in the git-ignored bench/out/). Topic `bench-fanout` has the first
`fanout` users, `bench-idle` the first `idle` (latency's idle phase), `bench-all`
has every user; `bench-replay` is a user of its own.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time

import orjson


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--fanout", type=int, required=True)
    parser.add_argument("--idle", type=int, default=100)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from notifications.auth import TOKEN_PREFIX, _digest
    from notifications.models import ApiToken, Subscription, Topic, UserStream

    t0 = time.monotonic()
    User = get_user_model()
    names = [f"bench-{i:05d}" for i in range(args.users)] + ["bench-replay"]
    with transaction.atomic():
        have = set(User.objects.filter(username__in=names).values_list("username", flat=True))
        User.objects.bulk_create([User(username=n, password="!bench-unusable") for n in names if n not in have], batch_size=2000)
        ids = dict(User.objects.filter(username__in=names).values_list("username", "id"))
        UserStream.objects.bulk_create([UserStream(user_id=uid) for uid in ids.values()], ignore_conflicts=True, batch_size=2000)
        user_ids = [ids[n] for n in names[:-1]]
        replay_id = ids["bench-replay"]

        ApiToken.objects.filter(user_id__in=ids.values()).delete()
        secrets_by_user: dict[int, str] = {}
        tokens = []
        for uid in ids.values():
            prefix = secrets.token_hex(7)
            secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
            secrets_by_user[uid] = secret
            tokens.append(ApiToken(user_id=uid, name="bench", prefix=prefix, digest=_digest(secret), scopes=["publish", "read"]))
        ApiToken.objects.bulk_create(tokens, batch_size=2000)

        fanout, _ = Topic.objects.get_or_create(slug="bench-fanout", defaults={"title": "Bench fan-out"})
        idle, _ = Topic.objects.get_or_create(slug="bench-idle", defaults={"title": "Bench, latency at idle"})
        everyone, _ = Topic.objects.get_or_create(slug="bench-all", defaults={"title": "Bench, every user"})
        for topic, members in ((fanout, user_ids[: args.fanout]), (idle, user_ids[: args.idle]), (everyone, user_ids)):
            Subscription.objects.filter(topic=topic).exclude(user_id__in=members).delete()
            subscriptions = [Subscription(user_id=u, topic=topic) for u in members]
            Subscription.objects.bulk_create(subscriptions, ignore_conflicts=True, batch_size=2000)

    data = {
        "tokens": [secrets_by_user[uid] for uid in user_ids],
        "user_ids": user_ids,
        "replay_user": replay_id,
        "replay_token": secrets_by_user[replay_id],
        "fanout_topic": "bench-fanout",
        "all_topic": "bench-all",
        "idle_topic": "bench-idle",
    }
    with open(args.out, "wb") as f:
        f.write(orjson.dumps(data))
    print(f"bench data: {len(user_ids)} users, tokens issued, in {time.monotonic() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
