"""The prices parser (`PUT /v1/sites/{id}/prices`) under generated input: valid schedules read
back as sent; anything else is refused with field errors, never another exception."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from enexa.optimizer.schema import MAX_SLOT, MIN_SLOT, PriceSchedule
from shared.errors import SchemaError
from shared.fields import format_timestamp
from shared.site_config import PRICE_RANGE
from tests.hostile import hostile_json, hostile_number, hostile_text

T0 = datetime(2026, 1, 15, tzinfo=UTC)
price = st.floats(min_value=PRICE_RANGE[0], max_value=PRICE_RANGE[1], allow_nan=False)


@st.composite
def valid_schedules(draw):
    """Slots in time order, with gaps or none, each 1 minute to 24 hours long."""
    count = draw(st.integers(min_value=1, max_value=30))
    at = T0 + timedelta(minutes=draw(st.integers(min_value=0, max_value=10_000)))
    slots = []
    for _ in range(count):
        at += timedelta(minutes=draw(st.integers(min_value=0, max_value=120)))  # a gap
        length = timedelta(minutes=draw(st.integers(min_value=1, max_value=24 * 60)))
        slots.append(
            {
                "start": format_timestamp(at),
                "end": format_timestamp(at + length),
                "import_price": draw(price),
                "export_price": draw(price),
            }
        )
        at += length
    return {"currency": draw(st.sampled_from(["EUR", "USD", "CHF"])), "slots": slots}


@settings(max_examples=150, deadline=None)
@given(valid_schedules(), st.randoms())
def test_a_valid_schedule_in_any_order_reads_back_sorted_as_sent(body, rnd):
    shuffled = {**body, "slots": rnd.sample(body["slots"], len(body["slots"]))}
    schedule = PriceSchedule.from_dict(shuffled)
    assert schedule.to_dict() == body
    assert schedule.start == datetime.fromisoformat(body["slots"][0]["start"])
    for slot in schedule.slots:
        assert MIN_SLOT <= slot.end - slot.start <= MAX_SLOT


@settings(max_examples=150, deadline=None)
@given(valid_schedules(), st.data())
def test_one_broken_field_is_refused_naming_that_field(body, data):
    index = data.draw(st.integers(min_value=0, max_value=len(body["slots"]) - 1))
    name = data.draw(st.sampled_from(["start", "end", "import_price", "export_price"]))
    bad = data.draw(
        st.sampled_from(["soon", None, True, 1e9, -1e9, "2026-01-15T10:00:00"])
        if name in ("start", "end")
        else st.one_of(hostile_text, st.just(1e3), st.just(-1e3), st.booleans(), st.none())
    )
    body["slots"][index][name] = bad
    try:
        PriceSchedule.from_dict(body)
    except SchemaError as exc:
        assert any(key.startswith(f"slots.{index}.") for key in exc.errors), exc.errors
    else:
        raise AssertionError(f"slots.{index}.{name} = {bad!r} was accepted")


@settings(max_examples=80, deadline=None)
@given(valid_schedules())
def test_overlapping_slots_are_refused(body):
    first = body["slots"][0]
    start = datetime.fromisoformat(first["start"])
    end = datetime.fromisoformat(first["end"])
    body["slots"].append({**first, "start": format_timestamp(start + (end - start) / 2)})
    try:
        PriceSchedule.from_dict(body)
    except SchemaError as exc:
        assert exc.errors.keys() & {"slots"} or any(k.startswith("slots.") for k in exc.errors)
    else:
        raise AssertionError("overlapping slots were accepted")


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        hostile_json,
        st.fixed_dictionaries(
            {"currency": hostile_text, "slots": st.lists(hostile_json, max_size=4)}
        ),
        st.fixed_dictionaries(
            {
                "currency": st.just("EUR"),
                "slots": st.lists(
                    st.fixed_dictionaries(
                        {
                            "start": hostile_text,
                            "end": hostile_text,
                            "import_price": hostile_number,
                            "export_price": hostile_number,
                        }
                    ),
                    max_size=3,
                ),
            }
        ),
    )
)
def test_anything_else_is_read_or_refused_with_field_errors_only(body):
    try:
        schedule = PriceSchedule.from_dict(body)
    except SchemaError as exc:
        assert exc.errors and all(isinstance(m, list) and m for m in exc.errors.values())
    else:
        assert schedule.slots and len(schedule.currency) == 3
