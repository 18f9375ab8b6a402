"""Small value types of the configuration: schedules, MySQL addresses, rule fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    BeforeValidator,
)

from syncd.rules import Rule, RuleError, parse_rule

INTERVAL_HOURS = (1, 2, 3, 4, 6, 8, 12, 24)


def _parse_rule_value(raw: Any) -> Rule | None:
    if raw is None or isinstance(raw, Rule):
        return raw
    try:
        return parse_rule(raw, path="")
    except RuleError as exc:
        raise ValueError(str(exc).removeprefix(".").removeprefix(": ")) from None


RuleField = Annotated[Rule | None, BeforeValidator(_parse_rule_value)]


@dataclass(frozen=True)
class Schedule:
    """When a job runs: never by itself, every N seconds, or on a cron expression."""

    kind: Literal["manual", "interval", "cron"]
    seconds: float = 0.0
    cron: str = ""


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_schedule(text: str) -> Schedule:
    """``manual``, ``every 30m`` / ``every 6h`` / ``every 1d``, or a 5-field cron expression."""
    t = text.strip()
    if t == "manual":
        return Schedule("manual")
    if t.startswith("every "):
        amount = t[6:].strip()
        unit = amount[-1:]
        if unit in _UNITS and amount[:-1].isdigit() and int(amount[:-1]) > 0:
            return Schedule("interval", seconds=float(int(amount[:-1]) * _UNITS[unit]))
        raise ValueError("'every' needs a positive number and a unit s, m, h or d (every 6h)")
    if len(t.split()) == 5:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(t)
        except ValueError as exc:
            raise ValueError(f"invalid cron expression: {exc}") from None
        return Schedule("cron", cron=t)
    raise ValueError("must be 'manual', 'every <n><s|m|h|d>' or a 5-field cron expression")


@dataclass(frozen=True)
class MysqlDsn:
    """A parsed ``mysql://user:password@host:port/database`` address."""

    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def parse(cls, dsn: str) -> MysqlDsn:
        """Parse a DSN; the error never repeats the DSN (it may hold a password)."""
        parts = urlsplit(dsn)
        if parts.scheme not in ("mysql", "mariadb"):
            raise ValueError("must be a mysql://user:password@host:port/database URL")
        try:
            port = parts.port or 3306
        except ValueError:
            raise ValueError("has an invalid port") from None
        database = parts.path.lstrip("/")
        if not parts.hostname or not database:
            raise ValueError("needs a host and a database: mysql://user@host:3306/database")
        return cls(
            host=parts.hostname,
            port=port,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=unquote(database),
        )
