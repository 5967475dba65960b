"""The service's webhook endpoints (a token with the `webhooks` scope): where the worker POSTs events, signed."""

from __future__ import annotations

from typing import Annotated

from django.http import HttpRequest
from ninja import Path, Router, Schema, Status
from pydantic import Field

from .. import services
from ..models import WebhookEndpoint, WebhookEvent
from ..schemas import ERRORS, ErrorOut, Strict
from .security import WEBHOOKS, caller

router = Router(tags=["webhooks"], auth=WEBHOOKS)

EndpointId = Annotated[int, Path(ge=1, le=2**62)]


class EndpointIn(Strict):
    model_config = {"json_schema_extra": {"examples": [{"url": "https://app.example.com/hooks/notify", "events": ["notification.action"]}]}}

    # Printable ASCII: a NUL or a control character is a clear 422 here, not a database error.
    url: str = Field(min_length=1, max_length=2000, pattern=r"^[!-~]+$", description="https, to a public host.")
    events: list[WebhookEvent] = Field(min_length=1, max_length=len(WebhookEvent.values), description="The events it receives.")


class EndpointOut(Schema):
    id: int
    url: str
    events: list[str]
    disabled: bool = Field(description="Turned off by an operator: nothing is sent to it until they turn it on.")
    created_at: str


class CreatedEndpointOut(EndpointOut):
    secret: str = Field(description="whsec_…: verifies the signatures. Shown in this answer only; keep it.")


class EndpointsOut(Schema):
    endpoints: list[EndpointOut]


def _out(e: WebhookEndpoint) -> EndpointOut:
    return EndpointOut(id=e.pk, url=e.url, events=list(e.events), disabled=e.disabled, created_at=e.created_at.isoformat())


@router.post("/webhook-endpoints", response={201: CreatedEndpointOut, 409: ErrorOut, **ERRORS})
def create_endpoint(request: HttpRequest, payload: EndpointIn) -> Status[CreatedEndpointOut]:
    """Add an endpoint for the events listed. The answer carries its signing secret, the one time it is shown."""
    e = services.webhooks.create_endpoint(url=payload.url, events=payload.events, created_by=caller(request).user)
    return Status(201, CreatedEndpointOut(**_out(e).model_dump(), secret=e.secret))


@router.get("/webhook-endpoints", response={200: EndpointsOut, **ERRORS})
def list_endpoints(request: HttpRequest) -> EndpointsOut:
    """Every endpoint of the service (never their secrets)."""
    return EndpointsOut(endpoints=[_out(e) for e in services.webhooks.active_endpoints()])


@router.get("/webhook-endpoints/{endpoint_id}", response={200: EndpointOut, **ERRORS})
def get_endpoint(request: HttpRequest, endpoint_id: EndpointId) -> EndpointOut:
    return _out(services.webhooks.get_endpoint(endpoint_id))


@router.delete("/webhook-endpoints/{endpoint_id}", response={204: None, **ERRORS})
def delete_endpoint(request: HttpRequest, endpoint_id: EndpointId) -> Status[None]:
    """Remove the endpoint: nothing more is sent to it, what was waiting included."""
    services.webhooks.remove_endpoint(endpoint_id)
    return Status(204, None)
