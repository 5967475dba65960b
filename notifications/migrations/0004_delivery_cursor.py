"""Delivery becomes a per-user cursor (docs/decisions/0004-delivery-cursor.md).

UserStream gains delivered_seq/delivered_at, taken from the rows' delivered_at
(acks are cumulative: the delivered rows of a user are a prefix of their seqs);
then the per-row column and the two partial indexes on it go.
"""

from typing import Any

from django.db import migrations, models
from django.db.models import Max


def cursor_from_rows(apps: Any, schema_editor: Any) -> None:
    notification = apps.get_model("notifications", "Notification")
    stream = apps.get_model("notifications", "UserStream")
    delivered = notification.objects.filter(delivered_at__isnull=False).values("recipient_id")
    for row in delivered.annotate(seq=Max("seq"), at=Max("delivered_at")).order_by("recipient_id"):
        stream.objects.filter(user_id=row["recipient_id"]).update(delivered_seq=row["seq"], delivered_at=row["at"])


def rows_from_cursor(apps: Any, schema_editor: Any) -> None:
    notification = apps.get_model("notifications", "Notification")
    stream = apps.get_model("notifications", "UserStream")
    for user_id, seq, at in stream.objects.filter(delivered_seq__gt=0).values_list("user_id", "delivered_seq", "delivered_at"):
        notification.objects.filter(recipient_id=user_id, seq__lte=seq).update(delivered_at=at)


class Migration(migrations.Migration):
    dependencies = [("notifications", "0003_drop_redundant_indexes")]

    operations = [
        migrations.AddField(model_name="userstream", name="delivered_seq", field=models.BigIntegerField(default=0)),
        migrations.AddField(model_name="userstream", name="delivered_at", field=models.DateTimeField(blank=True, null=True)),
        migrations.RunPython(cursor_from_rows, rows_from_cursor),
        migrations.RemoveIndex(model_name="notification", name="notification_undelivered"),
        migrations.RemoveIndex(model_name="notification", name="notification_admin_undelivered"),
        migrations.RemoveField(model_name="notification", name="delivered_at"),
    ]
