"""The shared site configuration: defaults, ranges and the checks of a sparse document."""

from shared import site_config


def test_a_sparse_document_within_the_ranges_is_valid():
    assert site_config.validate({"watchdog": {"interval_s": 5}, "setpoint_validity_s": 600}) == {}


def test_a_value_out_of_range_an_unknown_key_and_a_wrong_type_each_name_their_field():
    errors = site_config.validate(
        {"watchdog": {"interval_s": 1}, "surcharge": {}, "grid": 5, "firmware": {"channel": "x"}}
    )
    assert errors == {
        "watchdog.interval_s": ["Must be between 2 and 60."],
        "surcharge": ["Unknown setting."],
        "grid": ["Must be an object."],
        "firmware.channel": ["Must be one of: stable, beta."],
    }


def test_a_document_that_is_not_an_object_is_refused_as_a_whole():
    assert site_config.validate([1]) == {"non_field_errors": ["Must be an object."]}


def test_merged_fills_what_a_document_leaves_out_with_the_defaults():
    settings = site_config.merged({"watchdog": {"timeout_s": 60}, "grid": None})
    assert settings["watchdog"] == {"interval_s": 10, "timeout_s": 60}
    assert settings["grid"] == {"limit_kw": None}  # open: Enexa fills it from the limits
    assert settings["setpoint_validity_s"] == site_config.DEFAULTS["setpoint_validity_s"]


def test_every_default_that_is_set_keeps_its_own_rule():
    for key, value in site_config.DEFAULTS.items():
        sections = value.items() if isinstance(value, dict) else [(None, value)]
        for name, default in sections:
            if default is None:
                continue
            rule = site_config.RULES[key] if name is None else site_config.RULES[key][name]
            assert site_config.check_value(rule, default) is None, (key, name)


def test_several_chargeposts_are_a_list_of_units_each_checked_with_its_index():
    two = [{"host": "10.0.0.5"}, {"host": "10.0.0.6", "port": 5020, "device_id": 2}]
    assert site_config.validate({"modbus": two}) == {}
    errors = site_config.validate({"modbus": [{"host": "10.0.0.5"}, {"port": 0}]})
    assert set(errors) == {"modbus.1.port", "modbus.1.host"}


def test_a_list_of_units_replaces_what_was_there_rather_than_merging():
    site = {"modbus": {"host": "10.0.0.5", "port": 5020}}
    two = [{"host": "10.0.0.6"}, {"host": "10.0.0.7"}]
    assert site_config.merge(site, {"modbus": two})["modbus"] == two
    assert site_config.merged(site, {"modbus": two})["modbus"] == two
    assert site_config.merged({"modbus": two}, {"modbus": {"host": "10.0.0.8"}})["modbus"] == {
        "host": "10.0.0.8"
    }
