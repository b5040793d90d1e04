"""schemathesis against both live OpenAPI schemas with every check (no server error; status
code, content type, headers and body as declared; bad data refused; auth not ignored): Enexa as
a controller key, an operator and staff, Amperio as Enexa's service token."""

from __future__ import annotations

import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import ALL_CHECKS
from schemathesis.generation import GenerationConfig, HeaderConfig

from demo.enexa import LiveEnexa, enexa_database
from tests.amperio.test_amperio_api import NEW_TOKEN, AmperioApi
from tests.lifetimes import stopped_at_end

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
# More examples find more (SCHEMATHESIS_EXAMPLES=50); the default keeps `make test` short.
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "3"))
# Header values gunicorn accepts (it answers malformed ones itself, with an HTML page, before
# the application sees the request): visible ASCII.
HEADER_VALUES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
GENERATION = GenerationConfig(headers=HeaderConfig(strategy=HEADER_VALUES))
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
            login = {"username": "operator", "password": enexa.env["ENEXA_DEMO_OPERATOR_PASSWORD"]}
            operator = requests.post(f"{enexa.url}/v1/auth/token", json=login, timeout=10).json()
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
            yield {
                "url": enexa.url,
                "staff": staff,
                "operator": operator["access"],
                "controller": key,
            }
        finally:
            enexa.stop()


@pytest.fixture(scope="module")
def live_amperio(tmp_path_factory):
    yield from stopped_at_end(AmperioApi(tmp_path_factory.mktemp("schemathesis-amperio")))


@pytest.fixture(scope="module")
def enexa_schema(live_api):
    return schemathesis.from_uri(
        f"{live_api['url']}/v1/schema/?format=json",
        base_url=live_api["url"],
        generation_config=GENERATION,
    )


@pytest.fixture(scope="module")
def amperio_schema(live_amperio):
    return schemathesis.from_uri(
        f"{live_amperio.url}/v1/schema/?format=json",
        base_url=live_amperio.url,
        generation_config=GENERATION,
    )


enexa = schemathesis.from_pytest_fixture("enexa_schema")
amperio = schemathesis.from_pytest_fixture("amperio_schema")
fuzz = hypothesis_settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def call_as(case, token: str, principal: str) -> None:
    """The case sent with `token`, its response held to every check schemathesis has."""
    case = case.partial_deepcopy()
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
    try:
        case.call_and_validate(checks=ALL_CHECKS, timeout=30)
    except AssertionError as exc:
        exc.add_note(f"Called as {principal}.")
        raise


@enexa.parametrize()
@fuzz
def test_enexa_answers_a_controller_an_operator_and_staff_as_its_schema_says(case, live_api):
    # One generated case for the three: generating costs more than a call. Staff last, as it
    # may delete the site or revoke the key the others call with.
    for principal in ("controller", "operator", "staff"):
        call_as(case, live_api[principal], principal)


@amperio.parametrize()
@fuzz
def test_amperio_answers_enexa_as_its_schema_says(case):
    call_as(case, NEW_TOKEN, "Enexa's service token")
