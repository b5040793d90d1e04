"""The optimizer's admin: prices uploaded as CSV (checked as the API checks them, errors named
by row), plans read-only."""

from django.core.files.uploadedfile import SimpleUploadedFile

from enexa.optimizer.models import Plan, PriceSlot

HEADER = "start,end,import_price,export_price\n"


def upload(admin_client, site, text: str):
    return admin_client.post(
        "/admin/optimizer/priceslot/upload/",
        {
            "site": site.pk,
            "currency": "EUR",
            "file": SimpleUploadedFile("prices.csv", text.encode(), content_type="text/csv"),
        },
    )


def test_a_csv_upload_stores_the_prices_and_the_list_links_to_it(admin_client, site):
    listing = admin_client.get("/admin/optimizer/priceslot/")
    assert b"/admin/optimizer/priceslot/upload/" in listing.content
    response = upload(
        admin_client,
        site,
        HEADER
        + "2026-01-15T00:00:00Z,2026-01-15T01:00:00Z,0.10,0.02\n"
        + "2026-01-15T01:00:00Z,2026-01-15T02:00:00Z,0.12,0.02\n",
    )
    assert response.status_code == 302
    assert list(PriceSlot.objects.values_list("import_price", "currency")) == [
        (0.10, "EUR"),
        (0.12, "EUR"),
    ]


def test_a_bad_csv_is_refused_naming_the_row_and_field(admin_client, site):
    response = upload(
        admin_client,
        site,
        HEADER
        + "2026-01-15T00:00:00Z,2026-01-15T01:00:00Z,0.10,0.02\n"
        + "2026-01-15T01:00:00Z,2026-01-15T01:00:00Z,cheap,0.02\n",
    )
    assert response.status_code == 200
    assert b"row 3, end" in response.content
    assert b"row 3, import_price: Must be a number." in response.content
    assert not PriceSlot.objects.exists()
    wrong_header = upload(admin_client, site, "from,to,price\n")
    assert b"The header must be" in wrong_header.content


def test_plans_are_read_only_in_the_admin(admin_client):
    assert admin_client.get("/admin/optimizer/plan/").status_code == 200
    assert admin_client.get("/admin/optimizer/plan/add/").status_code == 403
    assert not Plan.objects.exists()
