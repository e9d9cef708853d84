"""durations: the one duration grammar (settings' ``interval``, policies' ``min_age``).

Every form that settings or policies accepted before the grammar was shared is a vector here, each marked
with where it came from; so is every refusal either had (negative, infinite, NaN, too long, malformed).
"""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from image_updater.durations import InvalidDuration, format_duration, parse_duration
from image_updater.errors import ConfigError

ACCEPTED = sorted(
    [
        # settings' forms
        ("1s", 1),
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("1.5h", 5400),
        ("1500ms", 1.5),
        ("500ms", 0.5),
        ("500MS", 0.5),
        ("2d", 172800),
        ("1m30s", 90),
        ("10M", 600),  # upper case M is minutes, as m
        # policies' forms
        ("0", 0),
        ("30", 30),
        ("1w", 604800),
        ("1w2d", 777600),
        ("7d", 604800),
        (" 2H ", 7200),
        ("30m1h", 5400),  # any order
        ("0s", 0),
        # combined forms that take from both
        ("1w 1d 1h 1m 1s 1ms", 604800 + 86400 + 3600 + 60 + 1.001),
        ("1.5", 1.5),
        ("2.5ms", 0.0025),
    ]
)

REFUSED = sorted(
    [
        ("", "is not a duration"),
        ("-1h", "is not a duration"),
        ("-5m", "is not a duration"),
        ("1h1h", "unit 'h' given twice"),
        ("1m30s1m", "unit 'm' given twice"),
        ("1y", "is not a duration"),
        ("1x", "is not a duration"),
        ("h", "is not a duration"),
        ("m5", "is not a duration"),
        ("1 h", "is not a duration"),  # no space inside a part
        ("5 minutes", "is not a duration"),
        ("1.h", "is not a duration"),
        (".5h", "is not a duration"),
        ("5m30", "is not a duration"),
        ("1h-", "is not a duration"),
        ("soon", "is not a duration"),
        ("inf", "is not a duration"),
        ("nan", "is not a duration"),
        ("1e3s", "is not a duration"),
        ("\uff11\uff12", "is not a duration"),  # full-width digits
        ("\uff11\uff12s", "is not a duration"),
        ("99999999999d", "too long"),
        ("9" * 400 + "s", "too long"),
        ("9" * 400, "too long"),
    ]
)


@pytest.mark.parametrize(("text", "seconds"), ACCEPTED)
def test_accepted(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(("text", "fragment"), REFUSED)
def test_refused(text: str, fragment: str) -> None:
    with pytest.raises(InvalidDuration) as info:
        parse_duration(text)
    assert fragment in str(info.value)
    assert repr(text) in str(info.value)


def test_an_invalid_duration_is_a_config_error_and_a_value_error() -> None:
    assert issubclass(InvalidDuration, ConfigError)
    assert issubclass(InvalidDuration, ValueError)


def test_the_refusal_says_what_to_write() -> None:
    with pytest.raises(InvalidDuration, match=r"write e\.g\. 90s, 5m, 1h30m or 7d, or plain seconds$"):
        parse_duration("soon")
    with pytest.raises(InvalidDuration, match=r"write e\.g\. 90s, 5m, 1h30m or 7d$"):
        parse_duration("soon", unit_required=True)


@pytest.mark.parametrize(("value", "seconds"), [(0, 0), (1.5, 1.5), (30, 30), (86400, 86400)])
def test_numbers_are_seconds(value: float, seconds: float) -> None:
    assert parse_duration(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (-1, "-1 is negative"),
        (-0.5, "-0.5 is negative"),
        (math.inf, "inf is not a usable number of seconds"),
        (-math.inf, "-inf is not a usable number of seconds"),
        (math.nan, "nan is not a usable number of seconds"),
        (10**20, "is too long a duration"),
        (1e300, "is too long a duration"),
    ],
)
def test_numbers_that_are_no_duration(value: float, fragment: str) -> None:
    with pytest.raises(InvalidDuration, match=fragment):
        parse_duration(value)


@pytest.mark.parametrize("value", [None, True, False, [1], {"s": 1}, timedelta(seconds=1), b"1s"])
def test_other_types_are_refused_without_echoing_them(value: object) -> None:
    with pytest.raises(InvalidDuration) as info:
        parse_duration(value)
    assert str(info.value) == "expected a duration such as 90s, 5m or 1h30m"


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("5", "write 5s or 5m"), (" 30 ", "write 30s or 30m"), ("1.5", "write 1.5s or 1.5m"),
        (30, "write 30s or 30m"), (1.5, "write 1.5s or 1.5m"), (0, "write 0s or 0m"),
    ],
)
def test_a_unit_can_be_required(value: object, hint: str) -> None:
    with pytest.raises(InvalidDuration, match=f"^a duration needs a unit: {hint}$"):
        parse_duration(value, unit_required=True)


WITH_UNITS = [(text, seconds) for text, seconds in ACCEPTED if not text.strip().replace(".", "").isdigit()]


@pytest.mark.parametrize(("text", "seconds"), WITH_UNITS)
def test_forms_with_units_are_read_where_a_unit_is_required(text: str, seconds: float) -> None:
    assert parse_duration(text, unit_required=True) == timedelta(seconds=seconds)


UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds", "ms": "milliseconds"}


@given(
    st.dictionaries(st.sampled_from(sorted(UNITS)), st.integers(min_value=0, max_value=10_000), min_size=1),
    st.randoms(use_true_random=False),
    st.sampled_from(["", " ", "  "]),
    st.booleans(),
)
def test_parts_in_any_order_and_case_add_up(
    amounts: dict[str, int], rnd: random.Random, separator: str, upper: bool
) -> None:
    parts = [f"{count}{unit.upper() if upper else unit}" for unit, count in amounts.items()]
    rnd.shuffle(parts)
    expected = timedelta(**{UNITS[unit]: count for unit, count in amounts.items()})
    assert parse_duration(separator.join(parts)) == expected


@given(st.integers(min_value=0, max_value=10**9))
def test_whole_seconds_in_text_or_as_numbers(seconds: int) -> None:
    assert parse_duration(str(seconds)) == parse_duration(seconds) == parse_duration(f"{seconds}s")


@given(st.text(alphabet="0123456789.wdhms -x", max_size=12))
def test_any_text_parses_or_is_refused_clearly(text: str) -> None:
    try:
        result = parse_duration(text)
    except InvalidDuration as exc:
        assert repr(text) in str(exc)
    else:
        assert result >= timedelta(0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-5, "0s"), (0, "0s"), (45, "45s"), (90, "1m30s"), (7200, "2h"), (86400, "1d"), (93784, "1d2h"),
     (1.9, "1s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


@given(st.integers(min_value=0, max_value=10**8))
def test_format_duration_reads_back_within_its_dropped_units(seconds: int) -> None:
    delta = timedelta(seconds=seconds)
    again = parse_duration(format_duration(delta))
    assert again <= delta
    assert delta - again < timedelta(hours=1)  # at most the third unit and below are dropped
