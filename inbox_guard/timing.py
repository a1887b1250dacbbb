"""When the service acts: the digest's cron trigger in the practice's own zone (07:30
stays 07:30 across daylight saving), how long IDLE waits before it is renewed, and the
backoff between retries after a failure. Pure: no clock is read here."""

from __future__ import annotations

from apscheduler.triggers.cron import CronTrigger

from .model import Settings

FIRST_RETRY_SECONDS = 5.0
IDLE_SECONDS = 25 * 60  # re-issue IDLE well before servers' 30-minute limit


def digest_trigger(settings: Settings) -> CronTrigger:
    hour, minute = (int(x) for x in settings.main.digest.at.split(":")[:2])
    return CronTrigger(
        day_of_week=",".join(settings.main.digest.days),
        hour=hour,
        minute=minute,
        timezone=settings.tz,
    )


def backoff(failures: int, cap: float) -> float:
    """Seconds before retry number ``failures`` (1, 2, ...): 5, 10, 20, ... up to ``cap``."""
    return float(min(cap, FIRST_RETRY_SECONDS * 2 ** max(0, failures - 1)))
