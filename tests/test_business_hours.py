"""Working-hours arithmetic: weekends, evenings, several intervals a day, and the days clocks change."""
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

import business_hours
from app import create_app

ROME = ZoneInfo("Europe/Rome")
WEEKDAYS = business_hours.parse("Mon-Fri 09:00-18:00", ROME)


def rome(*args):
    return datetime(*args, tzinfo=ROME)


def test_two_hours_inside_a_working_day():
    assert business_hours.add(WEEKDAYS, rome(2026, 3, 4, 10, 0), 2) == rome(2026, 3, 4, 12, 0)


def test_friday_evening_plus_two_hours_is_monday_morning():
    friday_evening = rome(2026, 3, 6, 19, 30)
    assert business_hours.add(WEEKDAYS, friday_evening, 2) == rome(2026, 3, 9, 11, 0)


def test_the_hours_left_on_friday_carry_over_to_monday():
    assert business_hours.add(WEEKDAYS, rome(2026, 3, 6, 17, 0), 2) == rome(2026, 3, 9, 10, 0)


def test_between_counts_only_working_hours():
    assert business_hours.between(WEEKDAYS, rome(2026, 3, 6, 17, 0), rome(2026, 3, 9, 10, 0)) == 2
    assert business_hours.between(WEEKDAYS, rome(2026, 3, 7, 10, 0), rome(2026, 3, 8, 10, 0)) == 0
    assert business_hours.between(WEEKDAYS, rome(2026, 3, 9, 10, 0), rome(2026, 3, 9, 9, 0)) == 0


def test_spring_forward_keeps_the_working_day_at_local_nine():
    # Europe/Rome moves to summer time on Sunday 29 March 2026: Monday still opens at 09:00 local, 07:00 UTC.
    opening = business_hours.add(WEEKDAYS, rome(2026, 3, 27, 18, 0), 1)
    assert opening == rome(2026, 3, 30, 10, 0)
    assert opening.astimezone(timezone.utc).hour == 8


def test_a_day_the_clock_changes_inside_the_working_hours_counts_real_hours():
    # A night shop open 00:00-06:00: on 25 October 2026 03:00 happens twice, so that night has 7 real hours.
    night = business_hours.parse("Sun 00:00-06:00", ROME)
    assert business_hours.between(night, rome(2026, 10, 25, 0, 0), rome(2026, 10, 26, 0, 0)) == 7
    assert business_hours.between(night, rome(2026, 3, 29, 0, 0), rome(2026, 3, 30, 0, 0)) == 5


def test_several_intervals_and_a_saturday_morning():
    hours = business_hours.parse("Mon-Fri 09:00-13:00, 15:00-19:00; Sat 10:00-13:00", ROME)
    assert business_hours.add(hours, rome(2026, 3, 4, 12, 0), 2) == rome(2026, 3, 4, 16, 0)
    assert business_hours.add(hours, rome(2026, 3, 6, 18, 30), 2) == rome(2026, 3, 7, 11, 30)


def test_empty_hours_mean_every_hour():
    always = business_hours.parse("", ROME)
    assert business_hours.add(always, rome(2026, 3, 7, 23, 0), 2) == rome(2026, 3, 8, 1, 0)


@pytest.mark.parametrize("text", ["Mon-Fri", "Xyz 09:00-18:00", "Mon 18:00-09:00", "Mon 09:00-25:00"])
def test_unreadable_hours_are_refused_with_a_reason(text):
    with pytest.raises(ValueError):
        business_hours.parse(text, ROME)


def test_next_opening_on_a_weekend_is_monday():
    assert business_hours.next_opening(WEEKDAYS, rome(2026, 3, 7, 12, 0)) == rome(2026, 3, 9, 9, 0)


@pytest.mark.parametrize("name, value", [("BUSINESS_HOURS", "weekdays 9 to 6"), ("PHONE_REGION", "XX"),
                                         ("DIGEST_HOUR", "25"), ("CALLBACK_SLOTS", "9-11")])
def test_a_wrong_follow_up_setting_stops_start_up_naming_it(config, name, value):
    with pytest.raises(SystemExit) as stopped:
        create_app({**config, name: value})
    assert f"POSTBOX_{name}" in str(stopped.value)
