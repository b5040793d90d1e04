"""The site configuration's checks under any document: `validate` answers field errors and never
raises, a list of ChargePosts is checked unit by unit, and what it accepts the gateway can use."""

from hypothesis import given, settings
from hypothesis import strategies as st

from shared import site_config
from tests.hostile import hostile_number, hostile_text

scalar = st.none() | st.booleans() | hostile_number | st.floats() | hostile_text
any_json = st.recursive(
    scalar,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=12,
)
host = st.from_regex(r"\A[a-z0-9][a-z0-9.-]{0,30}\Z")
unit = st.fixed_dictionaries(
    {"host": host},
    optional={"port": st.integers(1, 65535), "device_id": st.integers(0, 247)},
)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from([*site_config.RULES, "tariff", "x"]), any_json))
def test_any_document_gets_field_errors_keyed_by_a_path_under_the_keys_it_has(document):
    errors = site_config.validate(document)
    assert isinstance(errors, dict)
    for path, messages in errors.items():
        assert path.split(".")[0] in document
        assert messages and all(isinstance(m, str) and m for m in messages)


@given(st.lists(unit, min_size=1, max_size=site_config.MAX_MODBUS_UNITS))
def test_a_list_of_one_to_sixteen_addressed_units_is_valid_and_stands_whole_when_merged(units):
    assert site_config.validate({"modbus": units}) == {}
    merged = site_config.merged({"modbus": {"host": "10.0.0.1", "port": 502}}, {"modbus": units})
    assert merged["modbus"] == units


@given(st.lists(unit, min_size=site_config.MAX_MODBUS_UNITS + 1, max_size=40))
def test_more_units_than_a_site_may_have_are_refused_as_a_whole(units):
    assert set(site_config.validate({"modbus": units})) == {"modbus"}


@given(st.lists(unit, min_size=1, max_size=8), st.data())
def test_a_unit_without_its_own_host_is_named_by_its_index(units, data):
    index = data.draw(st.integers(0, len(units) - 1))
    broken = [dict(u) for u in units]
    del broken[index]["host"]
    assert set(site_config.validate({"modbus": broken})) == {f"modbus.{index}.host"}


@given(st.lists(any_json, min_size=1, max_size=6))
def test_any_list_under_modbus_gets_errors_only_for_paths_of_its_own_units(units):
    for path in site_config.validate({"modbus": units}):
        parts = path.split(".")
        assert parts[0] == "modbus"
        assert len(parts) == 1 or 0 <= int(parts[1]) < len(units)
