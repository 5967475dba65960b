from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from notifications import notify

from .models import Order, User


class OutOfStock(Exception):
    pass


@csrf_exempt  # called by the test as a service would; a real form posts its CSRF token
@require_POST
def place_order(request: HttpRequest) -> HttpResponse:
    """The app's own change and its notification in one transaction: both commit, or neither."""
    owner = get_object_or_404(User, email=request.POST["email"])
    try:
        with transaction.atomic():
            order = Order.objects.create(owner=owner, item=request.POST["item"])
            stored = notify([owner], title=f"Order placed: {order.item}", url=f"/orders/{order.pk}", kind="shop.order")
            if request.POST.get("out_of_stock"):
                raise OutOfStock
    except OutOfStock:
        return JsonResponse({"placed": False}, status=409)
    return JsonResponse({"placed": True, "order": order.pk, "seq": stored[0].seq})


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "shop/home.html")
