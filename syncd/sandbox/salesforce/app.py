"""A faithful local simulator of the Salesforce REST API (OAuth, SOQL, collections, limits).

`create_salesforce_app` builds the aiohttp app on `make_app`: the OAuth token endpoint
(client credentials, refresh token, JWT bearer), ``query``/``queryAll`` with paging,
``deleted``, ``describe``, ``limits`` and sObject Collections create/update/upsert/delete;
`records` adds the single-record resources, describe global and the versions list. Every
authenticated ``/services/data`` response carries ``Sforce-Limit-Info``; the daily limit ends
in 403 REQUEST_LIMIT_EXCEEDED; every error under ``/services/data`` is a JSON array, 404 and
405 included. Data lives in `SalesforceSandbox`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from datetime import timedelta
from typing import Any
from urllib.parse import unquote_plus

import jwt
from aiohttp import web

from syncd.sandbox.common import Handler, make_app
from syncd.sandbox.salesforce.records import (
    DATA,
    LATEST_VERSION,
    OLDEST_VERSION,
    add_record_routes,
    errors_response,
    object_of_request,
    read_json,
    save_options_of,
)
from syncd.sandbox.salesforce.seed import bulk_insert_contacts, seed_salesforce
from syncd.sandbox.salesforce.soql import SoqlError, now_utc, parse_datetime, parse_query, run_query
from syncd.sandbox.salesforce.state import (
    QueryCursor,
    SalesforceSandbox,
    format_dt,
    make_id,
)
from syncd.sandbox.salesforce.writes import ApiError, apply_collection

__all__ = [
    "SESSION_EXPIRED_BODY",
    "SalesforceSandbox",
    "bulk_insert_contacts",
    "create_salesforce_app",
    "seed_salesforce",
]

SESSION_EXPIRED_BODY = [
    {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
]
LIMIT_EXCEEDED_BODY = [
    {"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}
]
ORG_ID = "00D5g000004SbXEEA0"
USER_ID = "0055g00000AbCdEAAV"
DEFAULT_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")


def _oauth_error(error: str, description: str, status: int = 400) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def _version(request: web.Request) -> str:
    return request.match_info["ver"][1:]


def create_salesforce_app(
    sandbox: SalesforceSandbox, *, jwt_audiences: tuple[str, ...] = DEFAULT_AUDIENCES
) -> web.Application:
    """The simulator app. Tokens are valid until `faults.expire_tokens` or `revoke_auth`."""
    app = make_app(sandbox)

    @web.middleware
    async def sf_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in ("/services/data", "/services/data/"):
            # The versions list needs no authentication (developer.salesforce.com REST API
            # "List Available REST API Versions").
            return await _json_errors(request, handler)
        if not path.startswith("/services/data/"):
            return await handler(request)
        if sandbox.faults.expire_tokens or sandbox.faults.revoke_auth:
            sandbox.tokens.clear()
            sandbox.faults.expire_tokens = False
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if token not in sandbox.tokens:
            return web.json_response(SESSION_EXPIRED_BODY, status=401)
        headers = {"Sforce-Limit-Info": sandbox.limit_header()}
        if sandbox.faults.exhaust_quota or sandbox.api_used >= sandbox.daily_limit:
            sandbox.api_used = max(sandbox.api_used, sandbox.daily_limit)
            headers["Sforce-Limit-Info"] = sandbox.limit_header()
            return web.json_response(LIMIT_EXCEEDED_BODY, status=403, headers=headers)
        sandbox.api_used += 1
        resp: web.StreamResponse
        if not _supported(path.split("/")[3]):
            # A version the org does not serve is a resource that does not exist.
            resp = errors_response(404, "NOT_FOUND", "The requested resource does not exist")
        else:
            resp = await _json_errors(request, handler)
        resp.headers["Sforce-Limit-Info"] = sandbox.limit_header()
        return resp

    app.middlewares.append(sf_mw)

    async def token(request: web.Request) -> web.Response:
        sandbox.token_requests += 1
        form = await request.post()
        grant = str(form.get("grant_type", ""))
        if sandbox.faults.revoke_auth:
            return _oauth_error("invalid_grant", "expired access/refresh token")
        if grant == "client_credentials":
            err = _check_client(sandbox, _client_of(request, form))
            if err is not None:
                return err
        elif grant == "refresh_token":
            err = _check_client(sandbox, _client_of(request, form))
            if err is not None:
                return err
            if sandbox.refresh_token is None or form.get("refresh_token") != sandbox.refresh_token:
                return _oauth_error("invalid_grant", "expired access/refresh token")
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            base = f"{request.scheme}://{request.host}"
            err = _check_jwt(sandbox, str(form.get("assertion", "")), (*jwt_audiences, base))
            if err is not None:
                return err
        else:
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        return web.json_response(_issue(sandbox, f"{request.scheme}://{request.host}"))

    async def query(request: web.Request) -> web.Response:
        q = request.query.get("q")
        if not q:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        parsed = parse_query(q, sandbox.field_types)
        obj = sandbox.object_name(parsed.obj) or parsed.obj
        include_deleted = request.path.split("/")[4] == "queryAll"
        rows = list(sandbox.records[obj].values())
        if not include_deleted:
            rows = [r for r in rows if not r["IsDeleted"]]
        else:
            # The recycle bin keeps a deleted record 15 days; then it is gone for queryAll too.
            purged = now_utc() - timedelta(days=15)
            rows = [r for r in rows if not r["IsDeleted"] or r["SystemModstamp"] >= purged]
        matched = run_query(parsed, rows)
        size = _batch_size(request.headers.get("Sforce-Query-Options", ""))
        kind = "queryAll" if include_deleted else "query"
        locator = make_id("01g", len(sandbox.locators) + 1)
        # The result set is fixed now (records change in place later, a cursor does not);
        # each page is rendered when it is asked for, as Salesforce streams a cursor.
        keep = (*parsed.fields, "Id")  # the record's url names its Id
        sandbox.locators[locator] = QueryCursor(
            obj, parsed.fields, _version(request), [{f: r.get(f) for f in keep} for r in matched]
        )
        return _page(sandbox, request, locator, 0, size, kind)

    async def query_more(request: web.Request) -> web.Response:
        locator, _, offset = request.match_info["locator"].rpartition("-")
        if locator not in sandbox.locators or not offset.isdigit():
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        size = _batch_size(request.headers.get("Sforce-Query-Options", ""))
        kind = request.path.split("/")[4]
        return _page(sandbox, request, locator, int(offset), size, kind)

    async def describe(request: web.Request) -> web.Response:
        obj = object_of_request(sandbox, request)
        fields = [
            {
                "name": name,
                "label": name.removesuffix("__c").replace("_", " "),
                "type": spec.type,
                "nillable": spec.nillable,
                "createable": spec.createable,
                "updateable": spec.updateable,
                "defaultedOnCreate": spec.defaulted,
                "length": spec.length,
                "externalId": spec.external_id,
                "unique": spec.unique,
            }
            for name, spec in sandbox.schema[obj].items()
        ]
        return web.json_response(
            {"name": obj, "label": obj, "custom": False, "createable": True, "fields": fields}
        )

    async def deleted(request: web.Request) -> web.Response:
        obj = object_of_request(sandbox, request)
        try:
            start = parse_datetime(request.query["start"].replace(" ", "+"))
            end = parse_datetime(request.query["end"].replace(" ", "+"))
        except (KeyError, ValueError):
            raise ApiError(
                400, "MALFORMED_QUERY", "start and end must be ISO 8601 dateTime values"
            ) from None
        now = now_utc().replace(second=0, microsecond=0)
        earliest = now - timedelta(days=15)
        if start < earliest:
            raise ApiError(
                400, "INVALID_REPLICATION_DATE", "startDate cannot be before earliestDateAvailable"
            )
        if end - start < timedelta(minutes=1):
            raise ApiError(
                400,
                "INVALID_REPLICATION_DATE",
                "startDate must chronologically precede endDate by more than one minute",
            )
        # Coverage is whole minutes, like the real endpoint: a deletion in the current minute
        # shows up in the next call, whose start is this latestDateCovered.
        covered = min(end, now).replace(second=0, microsecond=0)
        rows = [
            {"id": rid, "deletedDate": format_dt(at)}
            for o, rid, at in sandbox.deleted_log
            if o == obj and start <= at < covered
        ]
        return web.json_response(
            {
                "deletedRecords": rows,
                "earliestDateAvailable": format_dt(earliest),
                "latestDateCovered": format_dt(covered),
            }
        )

    async def limits(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "DailyApiRequests": {
                    "Max": sandbox.daily_limit,
                    "Remaining": max(sandbox.daily_limit - sandbox.api_used, 0),
                }
            }
        )

    async def collection(request: web.Request) -> web.Response:
        body = await read_json(request)
        op = "create" if request.method == "POST" else "update"
        results = apply_collection(
            sandbox,
            op,
            body.get("records"),
            all_or_none=bool(body.get("allOrNone", False)),
            endpoint=f"{request.method} composite/sobjects",
            options=save_options_of(request),
            version=_version(request),
        )
        return web.json_response(results)

    async def upsert(request: web.Request) -> web.Response:
        obj = object_of_request(sandbox, request)
        ext = sandbox.canonical_field(obj, request.match_info["field"])
        if ext is None or not sandbox.schema[obj][ext].external_id:
            raise ApiError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: "
                f"{request.match_info['field']}",
            )
        body = await read_json(request)
        results = apply_collection(
            sandbox,
            "upsert",
            body.get("records"),
            all_or_none=bool(body.get("allOrNone", False)),
            path_type=obj,
            ext_field=ext,
            endpoint=f"PATCH composite/sobjects/{obj}/{ext}",
            options=save_options_of(request),
            version=_version(request),
        )
        return web.json_response(results)

    async def delete_collection(request: web.Request) -> web.Response:
        """DELETE composite/sobjects?ids=…: one result per id, in order; an id that is not
        there (or already deleted) answers ENTITY_IS_DELETED, as Salesforce does."""
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        if not ids or len(ids) > 200:
            raise ApiError(400, "INVALID_FIELD", "ids: between 1 and 200 record ids")
        results = []
        for rid in ids:
            obj = sandbox.object_of(rid)
            if obj is not None and sandbox.delete(obj, rid):
                sandbox.record_write(
                    f"DELETE composite/sobjects/{obj}", obj, rid, {"IsDeleted": True}
                )
                results.append({"id": rid, "success": True, "errors": []})
            else:
                results.append(
                    {
                        "id": rid,
                        "success": False,
                        "errors": [
                            {
                                "statusCode": "ENTITY_IS_DELETED",
                                "message": "entity is deleted",
                                "fields": [],
                            }
                        ],
                    }
                )
        return web.json_response(results)

    r = app.router
    r.add_post("/services/oauth2/token", token)
    r.add_delete(DATA + "/composite/sobjects", delete_collection)
    # Each resource also answers with a trailing slash, as the official clients call some
    # (simple-salesforce: ``query/?q=``, ``limits/``, ``sobjects/Contact/``).
    for slash in ("", "/"):
        r.add_get(DATA + "/query" + slash, query)
        r.add_get(DATA + "/queryAll" + slash, query)
        r.add_get(DATA + "/limits" + slash, limits)
        r.add_get(DATA + "/sobjects/{type}/describe" + slash, describe)
        r.add_get(DATA + "/sobjects/{type}/deleted" + slash, deleted)
    r.add_get(DATA + "/query/{locator}", query_more)
    r.add_get(DATA + "/queryAll/{locator}", query_more)
    r.add_post(DATA + "/composite/sobjects", collection)
    r.add_patch(DATA + "/composite/sobjects", collection)
    r.add_patch(DATA + "/composite/sobjects/{type}/{field}", upsert)
    add_record_routes(app, sandbox)  # after the fixed sobjects/{type}/… resources above
    return app


def _supported(version: str) -> bool:
    """``vNN.0`` within the versions the org serves."""
    number = version[1:].removesuffix(".0")
    return number.isdigit() and OLDEST_VERSION <= int(number) <= LATEST_VERSION


async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's answer; its errors as Salesforce's JSON arrays, the router's 404 and 405
    included (REST API "Status Codes and Error Responses": NOT_FOUND, METHOD_NOT_ALLOWED
    "HTTP Method 'PUT' not allowed. Allowed are GET,PATCH,DELETE")."""
    try:
        return await handler(request)
    except ApiError as exc:
        return errors_response(exc.status, exc.code, exc.message, exc.extra)
    except SoqlError as exc:
        return errors_response(400, exc.code, exc.message)
    except web.HTTPMethodNotAllowed as exc:
        allowed = ",".join(sorted(exc.allowed_methods))
        return errors_response(
            405,
            "METHOD_NOT_ALLOWED",
            f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}",
        )
    except web.HTTPNotFound:
        return errors_response(404, "NOT_FOUND", "The requested resource does not exist")


def _batch_size(option: str) -> int:
    for part in option.split(","):
        key, _, value = part.strip().partition("=")
        if key == "batchSize" and value.isdigit():
            return min(max(int(value), 200), 2000)
    return 2000


def _page(
    sandbox: SalesforceSandbox,
    request: web.Request,
    locator: str,
    offset: int,
    size: int,
    kind: str,
) -> web.Response:
    cursor = sandbox.locators[locator]
    rows = cursor.rows
    chunk = [
        sandbox.to_api(cursor.obj, r, cursor.fields, cursor.version)
        for r in rows[offset : offset + size]
    ]
    end = offset + len(chunk)
    body: dict[str, Any] = {"totalSize": len(rows), "done": end >= len(rows), "records": chunk}
    if end < len(rows):
        body["nextRecordsUrl"] = f"/services/data/v{_version(request)}/{kind}/{locator}-{end}"
    else:
        sandbox.locators.pop(locator, None)
    return web.json_response(body)


def _client_of(request: web.Request, form: Any) -> tuple[str, str]:
    """The client id and secret of a token request: in the form, or as HTTP Basic client
    authentication, which the client credentials flow also accepts (help.salesforce.com
    "OAuth 2.0 Client Credentials Flow for Server-to-Server Integration"; simple-salesforce
    sends it so). Basic credentials are form-encoded first (RFC 6749 section 2.3.1)."""
    auth = request.headers.get("Authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return "", ""
        client_id, _, secret = decoded.partition(":")
        return unquote_plus(client_id), unquote_plus(secret)
    return str(form.get("client_id", "")), str(form.get("client_secret", ""))


def _check_client(sandbox: SalesforceSandbox, client: tuple[str, str]) -> web.Response | None:
    client_id, given = client
    if client_id != sandbox.client_id:
        return _oauth_error("invalid_client_id", "client identifier invalid")
    if not hmac.compare_digest(given.encode(), sandbox.client_secret.encode()):
        return _oauth_error("invalid_client", "invalid client credentials")
    return None


def _check_jwt(
    sandbox: SalesforceSandbox, assertion: str, audiences: tuple[str, ...]
) -> web.Response | None:
    if sandbox.jwt_public_key is None:
        return _oauth_error("invalid_grant", "invalid assertion")
    try:
        claims = jwt.decode(
            assertion,
            sandbox.jwt_public_key,
            algorithms=["RS256"],
            audience=list(audiences),
            options={"require": ["iss", "sub", "aud", "exp"]},
        )
    except jwt.InvalidAudienceError:
        return _oauth_error("invalid_grant", "audience is invalid")
    except jwt.ExpiredSignatureError:
        return _oauth_error("invalid_grant", "expired authorization code")
    except jwt.PyJWTError:
        return _oauth_error("invalid_grant", "invalid assertion")
    if claims.get("iss") != sandbox.client_id:
        return _oauth_error("invalid_client_id", "client identifier invalid")
    if claims.get("sub") != sandbox.username:
        return _oauth_error("invalid_grant", "user hasn't approved this consumer")
    return None


def _issue(sandbox: SalesforceSandbox, base: str) -> dict[str, str]:
    token = f"{ORG_ID[:15]}!{secrets.token_urlsafe(48)}"
    sandbox.tokens.add(token)
    issued_at = str(int(time.time() * 1000))
    ident = f"{base}/id/{ORG_ID}/{USER_ID}"
    sig = hmac.new(sandbox.client_secret.encode(), (ident + issued_at).encode(), hashlib.sha256)
    return {
        "access_token": token,
        "instance_url": base,
        "id": ident,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": base64.b64encode(sig.digest()).decode(),
    }
