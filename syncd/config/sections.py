"""The configuration's sections: one pydantic model per TOML table, validated on load."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from syncd.config.values import INTERVAL_HOURS, MysqlDsn, RuleField, parse_schedule
from syncd.model import ObjectType


class Section(BaseModel):
    """Base of every config section: unknown keys are errors; secrets may come from files.

    For a secret key ``x``, ``x_file = "/path"`` reads the value from that file (systemd
    ``LoadCredential=``, Docker secrets); giving both is an error.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        for name, info in cls.model_fields.items():
            key = f"{name}_file"
            if key not in out:
                continue
            if "SecretStr" not in str(info.annotation):
                raise ValueError(f"{key}: {name} is not a secret; set it directly")
            if out.get(name) is not None:
                raise ValueError(f"{key}: give either {name} or {key}, not both")
            path = Path(str(out.pop(key)))
            try:
                out[name] = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from None
        return out


class DaemonSettings(Section):
    """How the daemon runs: where it listens, keeps state, logs and drains."""

    listen: str = "127.0.0.1:8080"
    state_dir: Path = Path("/var/lib/syncd")
    store: Literal["sqlite", "mysql"] = "sqlite"
    mysql_dsn: SecretStr | None = None
    admin_token: SecretStr | None = None
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    drain_timeout: float = Field(default=30.0, gt=0, le=3600)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    # A client gets this long to send a request's line and headers, and then its body;
    # slower connections are closed (408 for a body), so they cannot pile up.
    header_timeout: float = Field(default=10.0, gt=0, le=600)
    body_timeout: float = Field(default=30.0, gt=0, le=3600)
    # Proxies whose X-Forwarded-Proto / X-Forwarded-For are believed (addresses or CIDRs).
    trusted_proxies: tuple[str, ...] = ()
    # Failed page sign-ins within login_window seconds before 429: per client address,
    # and from anywhere together (the admin account).
    login_failures_per_address: int = Field(default=5, ge=1, le=1000)
    login_failures_total: int = Field(default=20, ge=1, le=100_000)
    login_window: float = Field(default=300.0, gt=0, le=86_400)
    instance_id: str | None = None
    public_url: str | None = None
    lease_seconds: float = Field(default=300.0, gt=0)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8080")
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            try:
                ipaddress.ip_network(p, strict=False)
            except ValueError:
                raise ValueError(f"{p!r} is not an IP address or network") from None
        return v

    @field_validator("mysql_dsn")
    @classmethod
    def _check_dsn(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            MysqlDsn.parse(v.get_secret_value())
        return v

    @model_validator(mode="after")
    def _store_needs_dsn(self) -> DaemonSettings:
        if self.store == "mysql" and self.mysql_dsn is None:
            raise ValueError("mysql_dsn: required when store = 'mysql'")
        return self

    @property
    def host(self) -> str:
        """Listen host, without IPv6 brackets."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """Listen port."""
        return int(self.listen.rpartition(":")[2])


class RateLimitSettings(Section):
    """Client-side request budget: at most `requests` per `per_seconds`."""

    requests: int = Field(ge=1)
    per_seconds: float = Field(gt=0)


class HttpSettings(Section):
    """Timeouts and retry policy for one vendor API."""

    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    retry_attempts: int = Field(default=5, ge=1, le=20)
    retry_base_delay: float = Field(default=0.5, ge=0)
    retry_max_delay: float = Field(default=30.0, ge=0)


class HubSettings(Section):
    """The marketing hub: ActiveCampaign or HubSpot."""

    kind: Literal["activecampaign", "hubspot"]
    base_url: str
    api_token: SecretStr
    webhook_token: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    rate_limit: RateLimitSettings | None = None
    bulk_rate_limit: RateLimitSettings | None = None
    quota_reserve: float = Field(default=0.10, ge=0, lt=1)
    tag_property: str = "syncd_sync_tags"
    http: HttpSettings = HttpSettings()

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL")
        return v.rstrip("/")

    @property
    def effective_rate_limit(self) -> RateLimitSettings:
        """The configured rate limit, or the vendor's documented default."""
        if self.rate_limit is not None:
            return self.rate_limit
        if self.kind == "activecampaign":
            return RateLimitSettings(requests=5, per_seconds=1.0)
        return RateLimitSettings(requests=100, per_seconds=10.0)


class CrmSettings(Section):
    """Salesforce: OAuth flow, API version and the external id fields upserts match on."""

    kind: Literal["salesforce"] = "salesforce"
    login_url: str = "https://login.salesforce.com"
    api_version: str = "61.0"
    auth_flow: Literal["client_credentials", "refresh_token", "jwt_bearer"] = "client_credentials"
    client_id: str
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    username: str | None = None
    private_key: SecretStr | None = None
    external_id_fields: dict[ObjectType, str] = Field(
        default_factory=lambda: {
            ObjectType.CONTACT: "Syncd_Hub_Id__c",
            ObjectType.LEAD: "Syncd_Hub_Id__c",
            ObjectType.ACCOUNT: "Syncd_Hub_Id__c",
        }
    )
    quota_reserve: float = Field(default=0.10, ge=0, lt=1)
    # Send ``Sforce-Duplicate-Rule-Header: allowSave=true`` with every write, so that duplicate
    # rules whose action is Allow (with an alert, as the standard rules are) save syncd's
    # records; off, such a save is an error naming the matched record.
    duplicate_rules_allow_save: bool = False
    http: HttpSettings = HttpSettings()

    @field_validator("login_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL")
        return v.rstrip("/")

    @field_validator("api_version")
    @classmethod
    def _check_version(cls, v: str) -> str:
        head, _, tail = v.partition(".")
        if not head.isdigit() or tail not in ("0", ""):
            raise ValueError("must look like 61.0")
        return f"{head}.0"

    @model_validator(mode="after")
    def _flow_needs(self) -> CrmSettings:
        needs = {
            "client_credentials": ("client_secret",),
            "refresh_token": ("client_secret", "refresh_token"),
            "jwt_bearer": ("username", "private_key"),
        }[self.auth_flow]
        missing = [n for n in needs if getattr(self, n) is None]
        if missing:
            raise ValueError(f"{missing[0]}: required for auth_flow = '{self.auth_flow}'")
        return self


class InboundSettings(Section):
    """The inbound buffer: when it flushes to the CRM and how retries are paced."""

    flush_interval: float = Field(default=600.0, gt=0)
    flush_size: int = Field(default=100, ge=1, le=10_000)
    poll_interval: float = Field(default=0.0, ge=0)
    # Each poll re-reads this many seconds before its cursor, skipping the records it already
    # saw: HubSpot's search finds a change up to about a minute late.
    poll_overlap_seconds: float = Field(default=120.0, ge=0)
    max_attempts: int = Field(default=8, ge=1)
    retry_base_delay: float = Field(default=30.0, ge=0)


class OutboundSettings(Section):
    """Scheduled pulls from the CRM."""

    interval_hours: int = 4
    overlap_seconds: float = Field(default=60.0, ge=0)
    interval_seconds_override: float | None = Field(default=None, gt=0)

    @field_validator("interval_hours", mode="before")
    @classmethod
    def _check_hours(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)  # environment overrides arrive as text
        if isinstance(v, bool) or v not in INTERVAL_HOURS:
            raise ValueError("must be one of " + ", ".join(map(str, INTERVAL_HOURS)))
        return v


class ObjectSyncSettings(Section):
    """Per object: whether and which way it syncs, which records, and the field mapping."""

    enabled: bool = True
    direction: Literal["two-way", "hub-to-crm", "crm-to-hub"] = "two-way"
    selection: Literal["none", "all_new", "flagged", "criteria"] = "all_new"
    flag_field: str | None = None
    criteria: RuleField = None
    mapping: dict[str, str] = Field(default_factory=dict)
    transforms: dict[str, Literal["lower", "upper", "strip", "title"]] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _selection_needs(self) -> ObjectSyncSettings:
        if self.selection == "flagged" and not self.flag_field:
            raise ValueError("flag_field: required when selection = 'flagged'")
        if self.selection == "criteria" and self.criteria is None:
            raise ValueError("criteria: required when selection = 'criteria'")
        unknown = set(self.transforms) - set(self.mapping)
        if unknown:
            raise ValueError(f"transforms: {sorted(unknown)[0]} is not a mapped hub field")
        return self


_PERSON = {"email": "Email", "firstName": "FirstName", "lastName": "LastName", "phone": "Phone"}
DEFAULT_OBJECTS: dict[str, dict[str, Any]] = {
    "contact": {"mapping": _PERSON, "required": ["lastName"]},
    # Salesforce requires Company on a new lead; map a hub field to it where the hub has one.
    "lead": {"mapping": dict(_PERSON), "required": ["lastName"]},
    "account": {"enabled": False, "mapping": {"name": "Name"}},
    "opportunity": {"enabled": False, "direction": "crm-to-hub"},
}


# HubSpot names contact properties in lower case; its contacts also carry "company".
_HS_PERSON = {"email": "Email", "firstname": "FirstName", "lastname": "LastName", "phone": "Phone"}
HUBSPOT_OBJECTS: dict[str, dict[str, Any]] = {
    "contact": {"mapping": _HS_PERSON, "required": ["lastname"]},
    "lead": {"mapping": {**_HS_PERSON, "company": "Company"}, "required": ["lastname", "company"]},
    "account": {"enabled": False, "mapping": {"name": "Name", "domain": "Website"}},
}


def _default_objects() -> dict[ObjectType, ObjectSyncSettings]:
    return {ObjectType(k): ObjectSyncSettings(**v) for k, v in DEFAULT_OBJECTS.items()}


class SyncSettings(Section):
    """Rules that apply in both directions."""

    conflict_winner: Literal["crm", "hub"] = "crm"
    only_with_email: bool = True
    # A record deleted on one side is deleted on the other too (off: only recorded).
    propagate_deletes: bool = False
    objects: dict[ObjectType, ObjectSyncSettings] = Field(default_factory=_default_objects)

    @field_validator("objects", mode="before")
    @classmethod
    def _over_defaults(cls, v: Any) -> Any:
        # A [sync.objects.X] table changes only the keys it names; the other objects and
        # keys keep their defaults (so setting a selection does not drop the mapping).
        if not isinstance(v, Mapping):
            return v
        merged: dict[Any, Any] = {k: dict(d) for k, d in DEFAULT_OBJECTS.items()}
        for key, table in v.items():
            name = str(key.value if isinstance(key, ObjectType) else key)
            if isinstance(table, Mapping) and name in merged:
                merged[name].update(table)
            else:
                merged[name] = table
        return merged


class DbsyncSettings(Section):
    """One MySQL table imported into one hub list."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    dsn: SecretStr
    table: str = Field(pattern=r"^[A-Za-z0-9_$]{1,64}$")
    list: str
    key_column: str = "id"
    mapping: dict[str, str]
    rules: RuleField = None
    delete_missing: bool = False
    # What delete_missing does to the contacts this dbsync added: delete them (as
    # ActiveCampaign's database sync does), or only take them off the list.
    delete_missing_action: Literal["delete", "unsubscribe"] = "delete"
    delete_safety_threshold: float = Field(default=0.5, ge=0, le=1)
    update_existing: bool = True
    # A NULL (or empty) mapped column clears the hub field; off, the hub keeps its value.
    null_clears: bool = True
    send_last_broadcast: bool = False
    schedule: str = "manual"
    batch_size: int = Field(default=250, ge=1, le=10_000)

    @field_validator("dsn")
    @classmethod
    def _check_dsn(cls, v: SecretStr) -> SecretStr:
        MysqlDsn.parse(v.get_secret_value())
        return v

    @field_validator("mapping")
    @classmethod
    def _check_mapping(cls, v: dict[str, str]) -> dict[str, str]:
        if "email" not in v.values():
            raise ValueError("one column must be mapped to the hub field 'email'")
        if list(v.values()).count("tags") > 1:
            raise ValueError("at most one column may be mapped to 'tags'")
        return v

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, v: str) -> str:
        parse_schedule(v)
        return v
