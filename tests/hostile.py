"""Hypothesis strategies of hostile wire values, shared by the property tests of both sides'
parsers (tests/enexa/test_hostile_input.py, tests/shared/test_hostile_parsers.py)."""

from hypothesis import strategies as st

# Timestamps at the calendar's ends: with their offsets they fall outside it in UTC.
CALENDAR_EDGES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-12-31T23:00:00Z"]
# NUL and lone surrogates (no database here stores them) and other odd but storable ones.
HOSTILE_CHARS = ["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\u2028", "\ufffe", "\U0010ffff"]

# Text with one hostile character somewhere.
odd_text = st.builds(
    lambda a, c, b: a + c + b,
    st.text(max_size=5),
    st.sampled_from(HOSTILE_CHARS),
    st.text(max_size=5),
)
hostile_text = st.one_of(
    st.text(max_size=20),
    odd_text,
    st.text(min_size=65, max_size=300),
    st.sampled_from(CALENDAR_EDGES + ["2024-01-15T10:00:00", "1969-12-31T23:59:59Z", ""]),
)
# Numbers JSON can carry: huge, tiny, negative, beyond any float or 32/64-bit column.
hostile_number = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([1e308, -1e308, 5e-324, 2**31, 2**63, 10**400, -(10**400), 0, -1]),
)
hostile_leaf = st.one_of(st.none(), st.booleans(), hostile_number, hostile_text)
hostile_json = st.recursive(
    hostile_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=12,
)
