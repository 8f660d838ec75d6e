"""Time to first answer, in working hours: per lead, per week (median, 90th percentile, within target), overdue."""
import math
import statistics
from datetime import datetime, timedelta, timezone

import business_hours

# Leads older than this are not listed as overdue: the list is what to do today, not an archive.
OVERDUE_WITHIN_DAYS = 30
OVERDUE_SHOWN = 20


def hours_to_answer(schedule, received_at, first_answer_at):
    """Working hours from a lead's arrival to its first answer (stored UTC ISO texts); None if unanswered."""
    if not first_answer_at:
        return None
    return business_hours.between(schedule, datetime.fromisoformat(received_at),
                                  datetime.fromisoformat(first_answer_at))


def percentile(values, fraction):
    """The nearest-rank percentile: the smallest value with at least `fraction` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def weekly(db, schedule, target_hours, now, weeks=8):
    """Per local week (newest first): leads, answered, median and p90 hours to answer, answered within target."""
    zone = schedule.zone
    today = now.astimezone(zone).date()
    first_monday = today - timedelta(days=today.weekday(), weeks=weeks - 1)
    since = datetime.combine(first_monday, datetime.min.time(), tzinfo=zone).astimezone(timezone.utc)
    rows = db.execute(
        "SELECT received_at, first_answer_at FROM submissions WHERE status != 'spam' AND received_at >= :since",
        {"since": since.isoformat(timespec="microseconds")}).mappings()
    by_week = {first_monday + timedelta(weeks=index): [] for index in range(weeks)}
    unanswered = dict.fromkeys(by_week, 0)
    for row in rows:
        day = datetime.fromisoformat(row["received_at"]).astimezone(zone).date()
        week = day - timedelta(days=day.weekday())
        hours = hours_to_answer(schedule, row["received_at"], row["first_answer_at"])
        if hours is None:
            unanswered[week] = unanswered.get(week, 0) + 1
        else:
            by_week.setdefault(week, []).append(hours)
    return [{"week": week, "leads": len(hours) + unanswered[week], "answered": len(hours),
             "median": statistics.median(hours) if hours else None,
             "p90": percentile(hours, 0.9) if hours else None,
             "within_target": sum(1 for value in hours if value <= target_hours)}
            for week, hours in sorted(by_week.items(), reverse=True)]


def overdue(db, schedule, target_hours, now, limit=OVERDUE_SHOWN):
    """Leads still new with no answer after more than `target_hours` working hours, oldest first.

    Returns (up to `limit` leads, whether there are more). Oldest first, the first candidates are the overdue
    ones, so a big inbox costs `limit` checks, not one per waiting lead.
    """
    since = (now - timedelta(days=OVERDUE_WITHIN_DAYS)).isoformat(timespec="microseconds")
    # A working hour is at least an hour: a lead younger than the target in plain hours cannot be overdue.
    until = (now - timedelta(hours=target_hours)).isoformat(timespec="microseconds")
    rows = db.execute(
        "SELECT id, form, received_at, name, email, subject, callback_at FROM submissions WHERE status = 'new'"
        " AND first_answer_at IS NULL AND received_at >= :since AND received_at <= :until ORDER BY received_at, id",
        {"since": since, "until": until}).mappings()
    leads = []
    for row in rows:
        waiting = business_hours.between(schedule, datetime.fromisoformat(row["received_at"]), now)
        if waiting <= target_hours:
            continue
        if len(leads) == limit:
            return leads, True
        leads.append({**dict(row), "waiting_hours": waiting})
    return leads, False
