"""A NUL character anywhere in an API request is a 400, never a server error (PostgreSQL
cannot hold one in text)."""

import pytest

pytestmark = pytest.mark.django_db


def test_a_nul_in_a_json_body_is_refused_with_400(staff_client, site):
    response = staff_client.post(
        "/v1/equipment", {"id": "M1", "kind": "meter", "site_id": "\x00"}, format="json"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


def test_a_nul_in_the_path_or_query_is_refused_with_400(staff_client, site):
    assert staff_client.get("/v1/sites/SITE%00").status_code == 400
    assert staff_client.get("/v1/sites?name=a%00b").status_code == 400


def test_a_nul_in_a_form_body_is_refused_with_400(staff_client, site):
    response = staff_client.post(
        "/v1/equipment",
        "id=M1&kind=meter&site_id=%00",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400


def test_an_escaped_backslash_before_u0000_is_not_a_nul(staff_client, site):
    response = staff_client.post(
        "/v1/equipment",
        {"id": "M1", "kind": "meter", "site_id": site.code, "name": "a\\u0000"},
        format="json",
    )
    assert response.status_code == 201, response.content
