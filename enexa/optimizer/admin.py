"""Admin of prices (with a CSV upload) and plans (read-only: a plan is immutable)."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from enexa.core.errors import InvalidInput
from enexa.registry.models import Site

from . import services
from .models import Plan, PriceSlot

CSV_COLUMNS = ("start", "end", "import_price", "export_price")
# The largest CSV the upload reads (a month of 15-minute prices is about 250 kB).
MAX_CSV_BYTES = 2_000_000
SLOT_PATH = re.compile(r"^slots\.(\d+)\.?(.*)$")


class PriceUploadForm(forms.Form):
    site = forms.ModelChoiceField(queryset=Site.objects.all())
    currency = forms.RegexField(regex=r"^[A-Z]{3}$", initial="EUR", max_length=3)
    file = forms.FileField(help_text="CSV: start,end,import_price,export_price")


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text  # the parser names the field: "Must be a number."


def csv_payload(data: bytes, currency: str) -> dict[str, Any]:
    """The `PUT .../prices` body of a CSV upload; raises InvalidInput for a bad header or
    encoding (the rows are checked by the same parser as the API)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput("The file is not UTF-8 text.", {"file": ["Not UTF-8."]}) from exc
    reader = csv.DictReader(io.StringIO(text))
    if tuple(name.strip() for name in reader.fieldnames or ()) != CSV_COLUMNS:
        raise InvalidInput(
            "Bad header.", {"file": ["The header must be: " + ",".join(CSV_COLUMNS) + "."]}
        )
    slots = [
        {
            "start": (row.get("start") or "").strip(),
            "end": (row.get("end") or "").strip(),
            "import_price": _number((row.get("import_price") or "").strip()),
            "export_price": _number((row.get("export_price") or "").strip()),
        }
        for row in reader
    ]
    return {"currency": currency, "slots": slots}


def error_lines(errors: dict[str, list[str]]) -> list[str]:
    """Field errors as lines naming the CSV row (the header is row 1)."""
    lines = []
    for field, messages_ in errors.items():
        match = SLOT_PATH.match(field)
        where = f"row {int(match.group(1)) + 2}, {match.group(2)}" if match else field
        lines.extend(f"{where}: {message}" for message in messages_)
    return lines


@admin.register(PriceSlot)
class PriceSlotAdmin(admin.ModelAdmin):
    """Prices per site and slot; `Upload CSV` replaces a range at once."""

    list_display = ["site", "start", "end", "import_price", "export_price", "currency"]
    list_filter = ["site", "currency"]
    date_hierarchy = "start"

    def get_urls(self):
        upload = path(
            "upload/",
            self.admin_site.admin_view(self.upload_view),
            name="optimizer_priceslot_upload",
        )
        return [upload, *super().get_urls()]

    def upload_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = PriceUploadForm(request.POST or None, request.FILES or None)
        errors: list[str] = []
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                if upload.size > MAX_CSV_BYTES:
                    raise InvalidInput("Too large.", {"file": ["At most 2 MB."]})
                payload = csv_payload(upload.read(), form.cleaned_data["currency"])
                schedule = services.replace_prices(form.cleaned_data["site"], payload)
            except InvalidInput as exc:
                errors = error_lines(exc.errors) or [exc.detail]
            else:
                self.message_user(
                    request,
                    f"{len(schedule.slots)} price slots stored for {form.cleaned_data['site']}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:optimizer_priceslot_changelist"))
        context = {**self.admin_site.each_context(request), "form": form, "errors": errors}
        return TemplateResponse(request, "admin/optimizer/price_upload.html", context)

    def changelist_view(self, request, extra_context=None):
        extra = {"upload_url": reverse("admin:optimizer_priceslot_upload")}
        return super().changelist_view(request, {**(extra_context or {}), **extra})


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    """Plans: read-only (immutable); make one with `POST /v1/sites/{site_id}/plans`."""

    list_display = [
        "code",
        "site",
        "version",
        "created_at",
        "reason",
        "status",
        "cost_total",
        "cost_baseline",
        "dispatched",
        "command_id",
    ]
    list_filter = ["site", "reason", "status", "dispatched"]
    search_fields = ["code", "site__code", "command_id", "inputs_digest"]
    readonly_fields = [f.name for f in Plan._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
