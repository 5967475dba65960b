"""The storage seam on PostgreSQL: set-based statements, built by the database where it is cheaper.

docs/benchmarks.md has the measurements behind each choice.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.db import connections, transaction
from django.db.models import Model, QuerySet

from .. import users
from ..fields import FRAME_FIELDS
from ..models import Notification, Topic, UserStream
from .base import M, MissingStreams, NewRow

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# How the replay statement reads each frame field (n: the notification, t: its topic).
# created_at is written as orjson writes it (RFC 3339, microseconds only when there are any),
# so replayed and live frames are the same text.
_FRAME_SQL = {
    "topic": "t.slug",
    "created_at": "to_char(n.created_at AT TIME ZONE 'UTC', CASE WHEN date_trunc('second', n.created_at) = n.created_at"
    ' THEN \'YYYY-MM-DD"T"HH24:MI:SS"+00:00"\' ELSE \'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\' END)',
    "read": "n.read_at IS NOT NULL",
}
_FRAME_OBJECT = (
    "json_build_object('type', 'notification', "
    + ", ".join(f"'{f.name}', {_FRAME_SQL.get(f.name, 'n.' + f.column)}" for f in FRAME_FIELDS)
    + ")::text"
)


class PostgresBackend:
    def insert(self, rows: list[NewRow]) -> None:
        # Two statements, everything else prepared before them. The first locks the
        # recipients' streams in user id order (the order every writer uses, so
        # writers never deadlock) and reads their heads. The second, under those
        # locks, advances the streams and inserts the rows with their seqs. A writer
        # that waited for the locks waited in the first statement; had it waited in
        # the one that updates, READ COMMITTED would re-check every row it locked in
        # its new version, once the other committed (docs/benchmarks.md, change 26).
        conn = transaction.get_connection()
        qn = conn.ops.quote_name
        counts = Counter(row.recipient_id for row in rows)
        user_ids = sorted(counts)
        streams = qn(UserStream._meta.db_table)
        user_type = users.db_type(conn)
        with conn.cursor() as cursor:
            cursor.execute(
                f"SELECT user_id, head_seq FROM {streams} WHERE user_id = ANY(%s::{user_type}[]) ORDER BY user_id FOR UPDATE", [user_ids]
            )
            heads: dict[users.UserId, int] = dict(cursor.fetchall())
            if len(heads) != len(user_ids):
                raise MissingStreams([u for u in user_ids if u not in heads])
            for row in rows:
                row.seq += heads[row.recipient_id]
            sql, params = self._insert_statement(conn, rows)
            cursor.execute(
                f"""
                WITH advanced AS (
                    UPDATE {streams} AS s SET head_seq = s.head_seq + m.n, unread = s.unread + m.n, unseen = s.unseen + m.n
                    FROM unnest(%s::{user_type}[], %s::bigint[]) AS m(user_id, n) WHERE s.user_id = m.user_id
                ) {sql}
                """,
                [user_ids, [counts[u] for u in user_ids], *params],
            )
            stored = cursor.fetchall()
        by_key = {(recipient_id, seq): id_ for id_, recipient_id, seq, _ in stored}
        # statement_timestamp(): the second statement's start, under the locks, so created_at follows seq order.
        # It comes as epoch microseconds: cheaper than a timestamptz per row.
        created_at = EPOCH + timedelta(microseconds=stored[0][3])
        for row in rows:
            row.id = by_key[(row.recipient_id, row.seq)]
            row.created_at = created_at

    @staticmethod
    def _insert_statement(conn: Any, rows: list[NewRow]) -> tuple[str, list[Any]]:
        """INSERT ... SELECT of the rows: a column with one value for all is one parameter, a varying one one JSON array."""
        qn = conn.ops.quote_name
        columns = [f for f in Notification._meta.concrete_fields if not f.primary_key]
        select: list[str] = []
        scalars: list[Any] = []
        arrays: list[tuple[str, list[Any]]] = []
        for f in columns:
            if f.attname == "created_at":
                select.append("statement_timestamp()")
                continue
            values = [getattr(row, f.attname) for row in rows]
            first = values[0]
            if f.attname not in {"recipient_id", "seq"} and all(v is first or v == first for v in values):
                select.append(f"%s::{f.db_type(conn)}")
                scalars.append(f.get_db_prep_save(first, conn))
            else:
                select.append(f"u.c{len(arrays)}::{f.db_type(conn)}")
                arrays.append((f.get_internal_type(), values))
        # A varying column travels as one JSON array, split by PostgreSQL in C.
        sources = ", ".join(f"json_array_elements{'' if kind == 'JSONField' else '_text'}(%s::json)" for kind, _ in arrays)
        sql = (
            f"INSERT INTO {qn(Notification._meta.db_table)} ({', '.join(qn(f.column) for f in columns)})"
            f" SELECT {', '.join(select)} FROM ROWS FROM ({sources}) AS u({', '.join(f'c{i}' for i in range(len(arrays)))})"
            f" RETURNING {qn(Notification._meta.pk.column)}, recipient_id, seq, (extract(epoch FROM created_at) * 1000000)::bigint"
        )
        varying = [orjson.dumps(values, option=orjson.OPT_NON_STR_KEYS).decode() for _, values in arrays]
        return sql, [*scalars, *varying]

    def user_in(self, queryset: QuerySet[M], user_ids: list[users.UserId]) -> QuerySet[M]:
        # One array parameter: far cheaper to build and bind than 1,000 placeholders.
        return queryset.extra(where=[f"user_id = ANY(%s::{users.db_type(connections[queryset.db])}[])"], params=[user_ids])

    def move_delivered(self, moved: dict[users.UserId, int], now: datetime) -> None:
        if not moved:
            return
        conn = transaction.get_connection()
        with conn.cursor() as cursor:
            cursor.execute(
                f"UPDATE {conn.ops.quote_name(UserStream._meta.db_table)} AS s SET delivered_seq = m.seq, delivered_at = %s"
                f" FROM unnest(%s::{users.db_type(conn)}[], %s::bigint[]) AS m(user_id, seq) WHERE s.user_id = m.user_id",
                [now, list(moved), list(moved.values())],
            )

    def replay_frames(self, user_id: users.UserId, *, since: int, head_seq: int, limit: int, now: datetime) -> list[tuple[int, str]]:
        conn = connections[Notification.objects.db]
        qn = conn.ops.quote_name
        with conn.cursor() as cursor:
            cursor.execute(
                f"SELECT n.seq, {_FRAME_OBJECT}"
                f" FROM {qn(Notification._meta.db_table)} n LEFT JOIN {qn(Topic._meta.db_table)} t ON t.id = n.topic_id"
                " WHERE n.recipient_id = %s AND n.seq > %s AND n.seq <= %s AND (n.expires_at IS NULL OR n.expires_at > %s)"
                " ORDER BY n.seq LIMIT %s",
                [user_id, since, head_seq, now, limit],
            )
            return [(int(seq), str(frame)) for seq, frame in cursor.fetchall()]

    def estimated_rows(self, model: type[Model]) -> int | None:
        table = model._meta.db_table
        with connections[model._default_manager.db].cursor() as cursor:
            cursor.execute(
                "SELECT SUM(GREATEST(c.reltuples, 0))::bigint, BOOL_OR(c.reltuples >= 0) FROM pg_class c "
                "WHERE c.oid = %s::regclass OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = %s::regclass)",
                [table, table],
            )
            row = cursor.fetchone()
        if row is None or not row[1]:
            return None  # never analyzed
        return int(row[0])


BACKEND = PostgresBackend()
