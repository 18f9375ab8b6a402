"""Configuration: a TOML file plus ``SYNCD_<SECTION>__<KEY>`` environment overrides.

All validation of user config lives in this package (the sections in `sections`, small value
types in `values`); the rest of syncd receives typed, frozen objects. This is also the only
module that reads ``os.environ``.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from syncd.config.sections import (
    HUBSPOT_OBJECTS,
    CrmSettings,
    DaemonSettings,
    DbsyncSettings,
    HttpSettings,
    HubSettings,
    InboundSettings,
    ObjectSyncSettings,
    OutboundSettings,
    RateLimitSettings,
    Section,
    SyncSettings,
)
from syncd.config.values import INTERVAL_HOURS, MysqlDsn, Schedule, parse_schedule

DEFAULT_CONFIG_PATH = Path("/etc/syncd/syncd.toml")


class ConfigInvalid(Exception):
    """The configuration has problems; each is a ``section.key: what is wrong`` line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Settings(BaseSettings):
    """The whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix="SYNCD_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    daemon: DaemonSettings = DaemonSettings()
    hub: HubSettings | None = None
    crm: CrmSettings | None = None
    inbound: InboundSettings = InboundSettings()
    outbound: OutboundSettings = OutboundSettings()
    sync: SyncSettings = SyncSettings()
    dbsync: list[DbsyncSettings] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment overrides the file (which arrives as init kwargs).
        return (env_settings, init_settings)

    @model_validator(mode="before")
    @classmethod
    def _hub_defaults(cls, data: Any) -> Any:
        # Default mappings follow the hub's field names; user tables still win per key.
        if not isinstance(data, Mapping):
            return data
        hub = data.get("hub")
        if not (isinstance(hub, Mapping) and hub.get("kind") == "hubspot"):
            return data
        out = dict(data)
        sync = dict(out.get("sync") or {})
        objects = {k: dict(v) for k, v in HUBSPOT_OBJECTS.items()}
        for key, table in (sync.get("objects") or {}).items():
            if isinstance(table, Mapping):
                objects.setdefault(str(key), {}).update(table)
            else:
                objects[str(key)] = table
        sync["objects"] = objects
        out["sync"] = sync
        return out

    @model_validator(mode="after")
    def _unique_dbsync_names(self) -> Settings:
        seen: set[str] = set()
        for i, d in enumerate(self.dbsync):
            if d.name in seen:
                raise ValueError(f"dbsync[{i}].name: duplicate name {d.name!r}")
            seen.add(d.name)
        if self.hub is not None and self.hub.kind != "activecampaign":
            for i, d in enumerate(self.dbsync):
                if d.send_last_broadcast:
                    raise ValueError(
                        f"dbsync[{i}].send_last_broadcast: {self.hub.kind} has no "
                        "'send the list's last campaign' API; turn the option off"
                    )
        return self

    def secret_values(self) -> list[str]:
        """Every secret value in the config (and DSN passwords), for log redaction."""
        out: list[str] = []
        for value in _walk(self):
            if isinstance(value, SecretStr):
                raw = value.get_secret_value()
                if raw:
                    out.append(raw)
                    if "://" in raw:
                        try:
                            pw = MysqlDsn.parse(raw).password
                        except ValueError:
                            pw = ""
                        if pw:
                            out.append(pw)
        return sorted(set(out), key=len, reverse=True)

    def digest(self) -> str:
        """A short fingerprint of the effective config (changes whenever any value does)."""
        h = hashlib.sha256()
        for value in _walk(self):
            h.update(
                repr(value.get_secret_value() if isinstance(value, SecretStr) else value).encode()
            )
        return h.hexdigest()[:16]

    def dbsync_by_name(self, name: str) -> DbsyncSettings | None:
        """The dbsync entry called `name`."""
        return next((d for d in self.dbsync if d.name == name), None)


def _walk(obj: Any) -> Iterator[Any]:
    if isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield name
            yield from _walk(getattr(obj, name))
    elif isinstance(obj, dict):
        for k, v in sorted(obj.items(), key=lambda kv: str(kv[0])):
            yield k
            yield from _walk(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _walk(v)
    else:
        yield obj


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """The config file to read: the explicit path, else ``SYNCD_CONFIG``, else the default."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("SYNCD_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read, merge and validate the configuration; raise ConfigInvalid listing every problem."""
    p = config_path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigInvalid([f"config: file not found: {p}"]) from None
    except OSError as exc:
        raise ConfigInvalid([f"config: cannot read {p}: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigInvalid([f"config: {p} is not valid TOML: {exc}"]) from None
    try:
        return Settings(**raw)
    except ValidationError as exc:
        raise ConfigInvalid(format_problems(exc)) from None


def format_problems(exc: ValidationError) -> list[str]:
    """Render validation errors as ``section.key: what is wrong`` lines, never echoing input."""
    problems: list[str] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = [
            f"[{p}]" if isinstance(p, int) else str(p)
            for p in err["loc"]
            if not str(p).startswith(("function-", "tagged-"))
        ]
        # Drop union/literal branch names pydantic puts in the location.
        loc = [p for p in loc if p not in ("SecretStr", "str", "int", "float", "bool", "[key]")]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required"
        # A validator may name the sub-key itself ("flag_field: required when ...").
        head, sep, rest = msg.partition(": ")
        if (
            sep
            and head.replace("_", "").replace("[", "").replace("]", "").replace(".", "").isalnum()
            and " " not in head
        ):
            loc.append(head)
            msg = rest
        key = ".".join(loc)
        key = key.replace(".[", "[")
        problems.append(f"{key or 'config'}: {msg}")
    return problems


@dataclass(frozen=True)
class SystemdEnv:
    """What systemd tells a service through its environment."""

    notify_socket: str | None
    watchdog_usec: int | None
    watchdog_pid: int | None


def systemd_env() -> SystemdEnv:
    """Read NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID (this module owns os.environ)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    return SystemdEnv(
        notify_socket=os.environ.get("NOTIFY_SOCKET") or None,
        watchdog_usec=int(usec) if usec.isdigit() else None,
        watchdog_pid=int(pid) if pid.isdigit() else None,
    )


__all__ = [
    "DEFAULT_CONFIG_PATH",
    "INTERVAL_HOURS",
    "ConfigInvalid",
    "CrmSettings",
    "DaemonSettings",
    "DbsyncSettings",
    "HttpSettings",
    "HubSettings",
    "InboundSettings",
    "MysqlDsn",
    "ObjectSyncSettings",
    "OutboundSettings",
    "RateLimitSettings",
    "Schedule",
    "Section",
    "Settings",
    "SyncSettings",
    "SystemdEnv",
    "config_path",
    "format_problems",
    "load_settings",
    "parse_schedule",
    "systemd_env",
]
