"""docs/modbus.md is the table generated from the register map, so the two never disagree."""

from amperio.modbus.docs import DOC_PATH, main, render


def test_the_committed_modbus_doc_equals_the_text_generated_from_the_map():
    assert DOC_PATH.read_text(encoding="utf-8") == render()


def test_the_doc_lists_every_register_and_says_the_map_is_modelled_on_sunspec():
    text = render()
    assert "modelled on the\npublic SunSpec conventions" in text
    for model in ("model 1", "model 203", "model 802", "model 704", "model 715"):
        assert model in text
    assert "| `bat2_power_setpoint_kw` | holding | 91 | int32 | 2 | 0.01 | kW | RW |" in text


def test_the_check_mode_fails_on_a_stale_doc(tmp_path):
    stale = tmp_path / "modbus.md"
    stale.write_text("old\n")
    assert main(["--out", str(stale), "--check"]) == 1
    assert main(["--out", str(stale)]) == 0
    assert main(["--out", str(stale), "--check"]) == 0
