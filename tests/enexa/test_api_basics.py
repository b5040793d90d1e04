"""The API plumbing: health, problem details, JWT authentication."""

import pytest


@pytest.mark.django_db
def test_health_answers_ok_while_the_database_is_up(anon_client):
    response = anon_client.get("/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"


@pytest.mark.django_db
def test_health_answers_with_or_without_a_trailing_slash_and_the_schema_names_one(anon_client):
    assert anon_client.get("/v1/health/").json() == anon_client.get("/v1/health").json()
    paths = anon_client.get("/v1/schema/?format=json").json()["paths"]
    assert "/v1/health" in paths
    assert "/v1/health/" not in paths


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["docs", "redoc", "schema"])
def test_the_docs_pages_typed_without_their_slash_redirect_to_it(anon_client, page):
    response = anon_client.get(f"/v1/{page}")
    assert response.status_code in (301, 302)
    assert response["Location"] == f"/v1/{page}/"
    assert anon_client.get(f"/v1/{page}/").status_code == 200


@pytest.mark.django_db
def test_an_unknown_api_path_is_a_problem_document(anon_client):
    response = anon_client.get("/v1/no-such-thing")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 404


@pytest.mark.django_db
def test_a_user_logs_in_and_refresh_rotation_refuses_the_old_token(anon_client, staff):
    tokens = anon_client.post(
        "/v1/auth/token",
        {"username": staff.username, "password": "correct-horse-battery"},
        format="json",
    ).json()
    assert {"access", "refresh"} <= tokens.keys()
    rotated = anon_client.post(
        "/v1/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json"
    )
    assert rotated.status_code == 200
    assert rotated.json()["refresh"] != tokens["refresh"]
    reused = anon_client.post(
        "/v1/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json"
    )
    assert reused.status_code == 401
    assert reused["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
def test_a_wrong_password_is_401_with_a_problem_document(anon_client, staff):
    response = anon_client.post(
        "/v1/auth/token", {"username": staff.username, "password": "nope"}, format="json"
    )
    assert response.status_code == 401
    assert response.json()["title"]
