"""Away channels (email, Web Push) behind one interface, base.Backend; services/away.py drives them."""

from __future__ import annotations

from ..models import Channel
from .base import AwaySettings, Backend, Item, Outcome, Recipient, categories, get_settings, natural_category, wider
from .email import EmailBackend
from .webpush import WebPushBackend

BACKENDS: dict[str, Backend] = {Channel.EMAIL: EmailBackend(), Channel.WEBPUSH: WebPushBackend()}

__all__ = ["BACKENDS", "AwaySettings", "Backend", "Item", "Outcome", "Recipient", "categories", "get_settings", "natural_category", "wider"]
