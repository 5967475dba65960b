"""A WebSocket ticket records what minted it (a token or a session): it, and its socket, hold only while that does.

Tickets from before this migration do not know what minted them, so they go
(they live a minute; a client asks for another).
"""

from typing import Any

import django.db.models.deletion
from django.db import migrations, models


def drop_untied_tickets(apps: Any, schema_editor: Any) -> None:
    apps.get_model("notifications", "WsTicket").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("notifications", "0004_delivery_cursor")]

    operations = [
        migrations.RunPython(drop_untied_tickets, migrations.RunPython.noop),
        migrations.AddField(
            model_name="wsticket",
            name="session_key",
            field=models.CharField(blank=True, default="", max_length=40),
        ),
        migrations.AddField(
            model_name="wsticket",
            name="token",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="notifications.apitoken"
            ),
        ),
        migrations.AddConstraint(
            model_name="wsticket",
            constraint=models.CheckConstraint(
                condition=models.Q(("token__isnull", True), ("session_key", ""), _connector="OR"), name="wsticket_one_credential"
            ),
        ),
    ]
