"""Working-hours arithmetic: when N working hours after a moment have passed, and how many lie between two.

Hours are written as the owner says them ("Mon-Fri 09:00-18:00; Sat 10:00-13:00") in the owner's time zone.
Every interval is built from local wall-clock times and then compared in UTC, so a day that changes to or
from summer time still counts the hours the owner actually works.
"""
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PART = re.compile(r"^\s*([A-Za-z]{3})(?:\s*-\s*([A-Za-z]{3}))?\s+(.+?)\s*$")
_INTERVAL = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
# Parts are separated by ";", or by "," before a day name; a "," before a time separates intervals of one part.
_PARTS = re.compile(r";|,(?=\s*[A-Za-z])")


@dataclass(frozen=True)
class Schedule:
    """Working intervals per weekday (0 = Monday): a tuple of (start, end) local times for each day."""

    days: tuple
    zone: object
    text: str = ""

    def intervals_on(self, day):
        """The UTC (start, end) datetimes of the working intervals of one local calendar day."""
        return [(_utc(day, start, self.zone), _utc(day, end, self.zone)) for start, end in self.days[day.weekday()]]


def _utc(day, wall_clock, zone):
    if wall_clock == time.max:
        return datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).astimezone(timezone.utc)
    return datetime.combine(day, wall_clock, tzinfo=zone).astimezone(timezone.utc)


def parse(text, zone):
    """Read "Mon-Fri 09:00-18:00; Sat 10:00-13:00"; empty text means every hour of every day.

    Raises ValueError with a sentence naming the part that could not be read.
    """
    days = [[] for _ in DAY_NAMES]
    parts = [part for part in _PARTS.split(text or "") if part.strip()]
    if not parts:
        return Schedule(days=tuple(((time(), time.max),) for _ in DAY_NAMES), zone=zone, text="")
    for part in parts:
        match = _PART.match(part)
        if not match:
            raise ValueError(f"{part.strip()!r} is not like 'Mon-Fri 09:00-18:00'")
        first, last = (name.lower() if name else None for name in match.group(1, 2))
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise ValueError(f"{part.strip()!r}: days are Mon, Tue, Wed, Thu, Fri, Sat, Sun")
        intervals = [_interval(part, interval) for interval in match.group(3).split(",")]
        first_index = DAY_NAMES.index(first)
        last_index = DAY_NAMES.index(last) if last else first_index
        for index in range(first_index, last_index + 1) if last_index >= first_index else \
                [*range(first_index, 7), *range(0, last_index + 1)]:
            days[index] += intervals
    return Schedule(days=tuple(tuple(sorted(day)) for day in days), zone=zone, text=" ".join((text or "").split()))


def _interval(part, text):
    """Read "09:00-18:00" into (start, end) local times; 24:00 is the end of the day."""
    match = _INTERVAL.match(text)
    if not match:
        raise ValueError(f"{part.strip()!r} is not like 'Mon-Fri 09:00-18:00'")
    start_hour, start_minute, end_hour, end_minute = (int(value) for value in match.groups())
    if start_hour > 23 or end_hour > 24 or start_minute > 59 or end_minute > 59 or (end_hour == 24 and end_minute):
        raise ValueError(f"{part.strip()!r}: hours are 00:00 to 24:00")
    start = time(start_hour, start_minute)
    end = time.max if end_hour == 24 else time(end_hour, end_minute)
    if end <= start:
        raise ValueError(f"{part.strip()!r}: the end must be after the start")
    return start, end


def _intervals_from(schedule, moment):
    """Yield the working intervals (UTC) from the local day of `moment` on, clipped to start at `moment`."""
    day = moment.astimezone(schedule.zone).date()
    while True:
        for start, end in schedule.intervals_on(day):
            if end > moment:
                yield max(start, moment), end
        day += timedelta(days=1)


def add(schedule, moment, hours):
    """Return the UTC moment at which `hours` working hours after `moment` have passed."""
    if not any(schedule.days):
        raise ValueError("the schedule has no working hours")
    left = timedelta(hours=hours)
    for start, end in _intervals_from(schedule, moment.astimezone(timezone.utc)):
        if end - start >= left:
            return start + left
        left -= end - start


def between(schedule, start, end):
    """Return how many working hours lie between two moments (0 when end is not after start)."""
    start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    total = timedelta()
    if end <= start or not any(schedule.days):
        return 0.0
    for begin, finish in _intervals_from(schedule, start):
        if begin >= end:
            break
        total += min(finish, end) - begin
    return total.total_seconds() / 3600


def next_opening(schedule, moment):
    """Return the UTC start of the first working interval at or after `moment` (moment itself if open)."""
    if not any(schedule.days):
        return None
    for start, _end in _intervals_from(schedule, moment.astimezone(timezone.utc)):
        return start
