"""Fields, constraints and indexes. Behaviour lives in services.py and selectors.py."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Level(models.TextChoices):
    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"


class UserStream(models.Model):
    """A user's sequence counter and unread count, locked to allocate seqs.

    head_seq is the last seq handed out, to a notification or to an inbox event
    (InboxEvent). unread (unread notifications in the inbox: not archived, not
    snoozed) and unseen (inbox notifications above seen_seq) are maintained by
    every write in services/ inside the same transaction; pruned_seq is the highest seq
    removed by retention (a resume from below it gets `reset`). delivered_seq
    is the highest seq some device of the user acked (acks are cumulative, so
    every seq up to it is delivered), delivered_at when it last moved
    (docs/decisions/0004-delivery-cursor.md).
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+")
    head_seq = models.BigIntegerField(default=0)
    unread = models.BigIntegerField(default=0)
    seen_seq = models.BigIntegerField(default=0)
    unseen = models.BigIntegerField(default=0)
    pruned_seq = models.BigIntegerField(default=0)
    delivered_seq = models.BigIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"stream of user {self.user_id}: head {self.head_seq}, unread {self.unread}"


class Topic(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    public = models.BooleanField(default=True, help_text="Anyone may subscribe; otherwise only staff can add subscribers.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.slug


class Subscription(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_subscriptions")
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="subscriptions")
    muted = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["topic", "user"], name="subscription_unique_topic_user")]
        indexes = [models.Index(fields=["user"], name="subscription_user")]

    def __str__(self) -> str:
        return f"{self.user} -> {self.topic}"


class Notification(models.Model):
    # Every index is paid on every insert of a fan-out: the foreign keys and
    # created_at get none of their own where a composite index below leads with them.
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications", db_index=False)
    seq = models.BigIntegerField(editable=False)
    topic = models.ForeignKey(Topic, null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications", db_index=False)
    kind = models.CharField(max_length=64, default="message")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, max_length=4000)
    data = models.JSONField(default=dict, blank=True)
    url = models.CharField(max_length=2000, blank=True)
    level = models.CharField(max_length=16, choices=Level.choices, default=Level.INFO)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)
    # In the inbox while neither is set; a snoozed one comes back as new at snoozed_until (services/snooze.py).
    archived_at = models.DateTimeField(null=True, blank=True)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # NULL, not "", for "no key": the unique (key, recipient) constraint only covers real keys.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    actions = models.JSONField(default=list, blank=True)  # up to 3 buttons (fields.Action)
    group_key = models.CharField(max_length=200, blank=True, default="")  # "" for none: one inbox row per (recipient, key)

    class Meta:
        constraints = [
            # Also the index behind replay and inbox pages (recipient, seq range).
            models.UniqueConstraint(fields=["recipient", "seq"], name="notification_unique_recipient_seq"),
            # Key first, so that a retry finds its earlier result by key alone.
            models.UniqueConstraint(
                fields=["idempotency_key", "recipient"],
                condition=Q(idempotency_key__isnull=False),
                name="notification_unique_key_recipient",
            ),
        ]
        indexes = [
            models.Index(fields=["recipient", "seq"], condition=Q(read_at__isnull=True), name="notification_unread"),
            models.Index(fields=["expires_at"], condition=Q(expires_at__isnull=False), name="notification_expiring"),
            # A group's members newest first, its latest, its counts (selectors.groups); only grouped rows pay for it.
            models.Index(fields=["recipient", "group_key", "seq"], condition=~Q(group_key=""), name="notification_group"),
            # Partial: a new row is in neither, so a publish pays nothing for them.
            models.Index(fields=["recipient", "seq"], condition=Q(archived_at__isnull=False), name="notification_archived"),
            models.Index(fields=["snoozed_until"], condition=Q(snoozed_until__isnull=False), name="notification_snoozed"),
            # The admin changelist: newest first by (created_at, id), each filter's index ending in that order,
            # so a filter (with or without the date drill-down) is one backward index range scan, no sort.
            models.Index(fields=["created_at", "id"], name="notification_admin_created"),
            models.Index(fields=["level", "created_at", "id"], name="notification_admin_level"),
            models.Index(fields=["topic", "created_at", "id"], name="notification_admin_topic"),
            models.Index(fields=["created_at", "id"], condition=Q(read_at__isnull=True), name="notification_admin_unread"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} to {self.recipient}: {self.title}"


class InboxEvent(models.Model):
    """A change of inbox state (read, archive, snooze...), at its own seq in the user's stream.

    Its seq comes from UserStream.head_seq like a notification's, so a device catches up on
    changes with the same cursor as on notifications. `body` is the `state` frame's fields
    after `type`, `seq` and `op` (protocol.state_event); pruned by retention like notifications.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    seq = models.BigIntegerField()
    op = models.CharField(max_length=16)
    body = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "seq"], name="inboxevent_unique_user_seq")]
        indexes = [models.Index(fields=["created_at"], name="inboxevent_created")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.op} of user {self.user_id}"


class ClientEvent(models.Model):
    """A client's state-changing frame or request, by the id the client gave it: applied once, answered every time."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    client_id = models.CharField(max_length=64)
    op = models.CharField(max_length=16)
    created_at = models.DateTimeField()
    reply = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "client_id"], name="clientevent_unique_user_id")]
        indexes = [models.Index(fields=["created_at"], name="clientevent_created")]

    def __str__(self) -> str:
        return f"{self.op} {self.client_id} of user {self.user_id}"


class ActionAnswer(models.Model):
    """A user's answer to one of a notification's actions: the first one stands (one per notification)."""

    notification = models.OneToOneField(Notification, on_delete=models.CASCADE, primary_key=True, related_name="answer")
    action = models.CharField(max_length=64)  # the answered action's id (fields.Action)
    answered_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.action} on notification {self.notification_id}"


class Scope(models.TextChoices):
    PUBLISH = "publish"
    READ = "read"
    CRITICAL = "critical"  # with publish: `level: error` + `data.critical: true` bypasses preferences and quiet hours
    USERS = "users"  # create, update and delete users by the app's own ids (beside an app: docs/integrate.md)
    WEBHOOKS = "webhooks"  # manage the service's webhook endpoints, which receive events about every user


class ApiToken(models.Model):
    """A service's bearer token. Only a SHA-256 of the secret is kept; the prefix identifies it in lists."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user_id})"


class WsTicket(models.Model):
    """A single-use, short-lived ticket for `?ticket=` on the WebSocket (kept hashed).

    It records what minted it, a token or a session (neither: the operator's
    `manage.py listen`), and is good, as is the socket it opens, only while that is.
    """

    digest = models.CharField(max_length=64, primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField(db_index=True)
    token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    session_key = models.CharField(max_length=40, blank=True, default="")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(token__isnull=True) | Q(session_key=""), name="wsticket_one_credential"),
        ]

    def __str__(self) -> str:
        return f"ticket for {self.user_id} until {self.expires_at}"


# --- away channels: email and Web Push (docs/channels.md) ----------------------------------


class Channel(models.TextChoices):
    EMAIL = "email"
    WEBPUSH = "webpush"


# A category: "" (everything), "topic:<slug>" or "kind:<prefix>" (notifications/delivery/base.py matches them).
CATEGORY_HELP = "Empty for everything, 'topic:<slug>', or 'kind:<prefix>' (e.g. 'kind:build' takes build.failed)."


class ChannelDefault(models.Model):
    """The operator's default for a category on a channel: on/off, and the delay before it is sent away."""

    channel = models.CharField(max_length=16, choices=Channel.choices)
    category = models.CharField(max_length=100, blank=True, help_text=CATEGORY_HELP)
    enabled = models.BooleanField(default=True)
    delay_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: the channel's delay from the settings.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "category"], name="channeldefault_unique")]

    def __str__(self) -> str:
        return f"{self.channel} {self.category or '*'}: {'on' if self.enabled else 'off'}"


class ChannelPreference(models.Model):
    """A user's choice for a category on a channel; wins over the operator's default."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    category = models.CharField(max_length=100, blank=True, help_text=CATEGORY_HELP)
    enabled = models.BooleanField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "channel", "category"], name="channelpreference_unique")]

    def __str__(self) -> str:
        return f"{self.user} {self.channel} {self.category or '*'}: {'on' if self.enabled else 'off'}"


class UserProfile(models.Model):
    """What an app tells of a user it names by its own id (PUT /api/v1/users/{username}) beyond the user model's email."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+")
    name = models.CharField(max_length=150, blank=True)
    locale = models.CharField(max_length=35, blank=True)  # a BCP 47 tag, e.g. "fr-CA"
    time_zone = models.CharField(max_length=64, blank=True)  # an IANA zone; quiet hours follow it

    def __str__(self) -> str:
        return f"profile of {self.user_id}"


class QuietHours(models.Model):
    """Email and push wait while the user's local time is in [start, end) (may wrap past midnight)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+")
    time_zone = models.CharField(max_length=64, default="UTC")
    start = models.TimeField()
    end = models.TimeField()

    class Meta:
        verbose_name_plural = "quiet hours"

    def __str__(self) -> str:
        return f"quiet {self.start}-{self.end} {self.time_zone} for {self.user}"


class PushSubscription(models.Model):
    """A browser's PushSubscription (endpoint on an allowed push service, and its keys)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    endpoint = models.CharField(max_length=1000, unique=True)
    p256dh = models.CharField(max_length=200)
    auth = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["user"], name="pushsubscription_user")]

    def __str__(self) -> str:
        return f"push for {self.user}: {self.endpoint[:60]}"


class ChannelCursor(models.Model):
    """Per user and channel: every seq up to `seq` is decided (sent, skipped, acked or read).

    The row a worker locks to claim a user's due work on a channel; `hold_until`
    backs off after a failure or through quiet hours, `last_sent_at` spaces digests.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    seq = models.BigIntegerField(default=0)
    hold_until = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0)
    last_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "channel"], name="channelcursor_unique")]

    def __str__(self) -> str:
        return f"{self.channel} cursor of {self.user_id} at {self.seq}"


class AwayDelivery(models.Model):
    """A notification sent (or decided against) on a channel: at most one per notification per channel."""

    class State(models.TextChoices):
        SENT = "sent"
        SKIPPED = "skipped"

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="+", db_index=False)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    state = models.CharField(max_length=8, choices=State.choices)
    at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["notification", "channel"], name="awaydelivery_unique")]
        verbose_name_plural = "away deliveries"

    def __str__(self) -> str:
        return f"{self.channel} {self.state} {self.notification_id}"


# --- webhooks: events to the publisher's endpoints (docs/webhooks.md) -------------------


class WebhookEvent(models.TextChoices):
    ACTION = "notification.action"
    DELIVERED = "notification.delivered"
    READ = "notification.read"
    EMAILED = "notification.emailed"
    PUSHED = "notification.pushed"


class WebhookEndpoint(models.Model):
    """A URL the worker POSTs the events it subscribes to, signed with its secret (Standard Webhooks)."""

    url = models.CharField(max_length=2000)
    events = models.JSONField(default=list)  # WebhookEvent values
    # Kept in the clear: it is an HMAC key the worker signs with, not a password. Shown once, when created.
    secret = models.CharField(max_length=100, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # By the operator: no event is written for it and what waits for it is not sent, until enabled again.
    disabled = models.BooleanField(default=False)
    # DELETE over the API: gone for good; the row stays for its attempt log.
    removed_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"webhook {self.pk}: {self.url[:80]}"


class WebhookMessage(models.Model):
    """One event for one endpoint, the outbox row: written in the transaction of the change it reports,
    sent by the worker until the endpoint answers 2xx or the retries run out."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"  # every retry failed
        CANCELLED = "cancelled"  # its endpoint was removed or disabled before it went

    id = models.CharField(primary_key=True, max_length=40, editable=False)  # msg_…: the webhook-id of every attempt
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="+")
    event_type = models.CharField(max_length=64, choices=WebhookEvent.choices)
    body = models.TextField()  # the exact JSON signed and sent on every attempt
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["next_attempt_at"], condition=Q(state="pending"), name="webhookmessage_due")]

    def __str__(self) -> str:
        return f"{self.id} {self.event_type} ({self.state})"


class WebhookAttempt(models.Model):
    """One POST of a message: its answer's status (or why there was none), how long it took, the answer's start."""

    message = models.ForeignKey(WebhookMessage, on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField()
    response = models.CharField(max_length=500, blank=True)

    def __str__(self) -> str:
        return f"{self.message_id} at {self.at}: {self.status_code or self.error}"
