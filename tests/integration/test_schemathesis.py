"""schemathesis against the live OpenAPI schema, as staff and as a controller: no server error,
and every response conforms to the schema (status code, content type, headers, body)."""

from __future__ import annotations

import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationConfig, HeaderConfig

from tests.integration.harness import LiveEnexa, enexa_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
# More examples find more; `make test` keeps the run short.
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "6"))
# Header values gunicorn accepts (it answers malformed ones itself, with an HTML page, before
# the application sees the request): visible ASCII.
HEADER_VALUES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
UNLIMITED = "controller=none,user=none,anon=none,login=none,register=none,auth_failure=none"


@pytest.fixture(scope="module")
def live_api(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("schemathesis")
    with enexa_database(tmp_path) as database_url:
        enexa = LiveEnexa(
            database_url, tmp_path, extra_env={"REDIS_URL": "", "ENEXA_RATE_LIMITS": UNLIMITED}
        )
        try:
            staff = enexa.staff_token()
            auth = {"Authorization": f"Bearer {staff}"}
            secret = requests.post(
                f"{enexa.url}/v1/sites/SITE001/enrollment-tokens", json={}, headers=auth, timeout=10
            ).json()["secret"]
            key = requests.post(
                f"{enexa.url}/v1/provisioning/register",
                json={"serial": "CP-SCHEMATHESIS", "site_id": "SITE001"},
                headers={"Authorization": f"Bearer {secret}"},
                timeout=10,
            ).json()["api_key"]
            yield {"url": enexa.url, "staff": staff, "key": key}
        finally:
            enexa.stop()


@pytest.fixture(scope="module")
def api_schema(live_api):
    return schemathesis.from_uri(
        f"{live_api['url']}/v1/schema/?format=json",
        base_url=live_api["url"],
        generation_config=GenerationConfig(headers=HeaderConfig(strategy=HEADER_VALUES)),
    )


schema = schemathesis.from_pytest_fixture("api_schema")
fuzz = hypothesis_settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@schema.parametrize()
@fuzz
def test_staff_calls_never_fail_and_conform_to_the_schema(case, live_api):
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {live_api['staff']}"}
    case.call_and_validate(timeout=30)


@schema.parametrize()
@fuzz
def test_controller_calls_never_fail_and_conform_to_the_schema(case, live_api):
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {live_api['key']}"}
    case.call_and_validate(timeout=30)
