"""A notification's actions and group_key, from the Python client's publish to its listener and its inbox, through
a real daphne process, PostgreSQL and Redis: live over the socket, replayed from the database, and over HTTP."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from notifications.client import Action, Client
from tests.conftest import DaphneServer
from tests.test_client import TIMEOUT, take

pytestmark = [
    pytest.mark.server,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_passwords", "close_thread_connections"),
]

ACTIONS = (Action("approve", "Approve ✓", "primary"), Action("logs", "View logs", "secondary", "https://ci.example/23"))


async def test_actions_and_group_key_round_trip_live_replayed_and_over_http(daphne: DaphneServer, make_user: Any, token_for: Any) -> None:
    alice = await sync_to_async(make_user)("alice")
    reader = Client(daphne.url, await sync_to_async(token_for)(alice, ("read",)))
    publisher = Client(daphne.url, await sync_to_async(token_for)(await sync_to_async(make_user)("svc"), ("publish",)))
    async with reader.listen() as stream:
        async with asyncio.timeout(TIMEOUT):
            await stream.wait_live()
        await asyncio.to_thread(publisher.publish, users=["alice"], title="Deploy?", actions=ACTIONS, group_key="deploys")
        await asyncio.to_thread(publisher.publish, users=["alice"], title="plain")
        live = await take(stream, 2)
    assert (live[0].actions, live[0].group_key) == (ACTIONS, "deploys")
    assert (live[1].actions, live[1].group_key) == ((), "")

    async with reader.listen(since=0) as again:  # replayed from PostgreSQL (storage.postgres builds the frame in SQL)
        assert await take(again, 2) == live

    page = await asyncio.to_thread(reader.inbox)
    assert [(n.actions, n.group_key) for n in page.items] == [((), ""), (ACTIONS, "deploys")]
    members = await asyncio.to_thread(reader.inbox, group_key="deploys")
    assert [n.title for n in members.items] == ["Deploy?"]
    # What the listener and the inbox give is the same value, field for field (the API writes times its own way).
    assert replace(page.items[1], created_at=live[0].created_at) == live[0]
