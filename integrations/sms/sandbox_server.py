"""A sandbox SMS vendor: one FastAPI app speaking both wire formats our clients speak, a router each.

- Twilio-shaped: `POST/GET /2010-04-01/Accounts/{AccountSid}/Messages.json`, `GET …/Messages/{Sid}.json`,
  `GET /2010-04-01/Accounts/{AccountSid}.json`; Basic auth with the account SID and auth token or
  with an API key (`SK…`) and its secret, as the official `twilio` SDK sends either;
  deduplication by `Idempotency-Key` (a resend returns the first message).
- Aliyun-shaped: the RPC endpoint `/` with `SendSms`, `SendBatchSms`, `QuerySendDetails`, checking the
  AccessKey and either signature the official SDK sends: V3 (`Authorization: ACS3-HMAC-SHA256 …`
  over the canonical request, `x-acs-*` headers, its default) or the RPC one (HMAC-SHA1 in a
  `Signature` parameter), with the timestamp and nonce replay. Like the vendor, it does not
  deduplicate, and it refuses a whole batch when one number is illegal or flow-controlled.
- `/_sandbox/…`: `health`, `messages` (what was received), `stats`, `reset`, `faults` (latency,
  bursts of 429/503 with Retry-After, 500 after executing, timeouts, numbers refused by pattern),
  and `reports/{aliyun,twilio}`: the delivery reports the vendor would push.
- Callbacks pushed, as the vendors push them, in the background: a Twilio-shaped send with a
  `StatusCallback` gets form-encoded status callbacks there (`sent` at once, then `delivered` or
  `undelivered` after `delivery_ms`), signed with `X-Twilio-Signature` under the auth token, sent
  once each. Aliyun-shaped sends get an SmsReport array after `delivery_ms` at the URL registered
  with `POST /_sandbox/callbacks` (`{"aliyun_url", "retry_delays"}`), unsigned as Aliyun sends them
  (the URL carries the receiver's `?token=`), and pushed again after any non-2xx answer (Aliyun
  counts an HTTP 200 as received), after 0.2, 0.5 and 1 s (the vendor's 1, 5 and 10 minutes,
  scaled down). `POST /_sandbox/render` returns a callback exactly as the vendor would post it
  (a status callback of a message, or a reply from a number), for a test to post itself. Faults
  `drop_callbacks` (lost) and `duplicate_callbacks` (sent twice) count down per push;
  `GET /_sandbox/callbacks` lists every attempt, dropped ones included.

Run it alone with `python -m integrations.sms.sandbox_server --port 8025`; the cycle and the tests
start it in a separate process through `integrations.sandbox.start_sandbox`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import hashlib
import hmac
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode

import httpx
from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from integrations._sandbox import (
    CREDENTIALS_ENV,
    callback_client,
    control_router,
    create_sandbox_app,
    post_callback,
    serve,
    with_faults,
)
from integrations._sandbox import (
    json_response as _json,
)
from integrations.sms._phones import from_aliyun, is_e164, to_aliyun
from integrations.sms._sandbox_state import (
    CallbackTarget,
    Credentials,
    Faults,
    SandboxMessage,
    SandboxState,
)
from integrations.sms._signing import (
    ACS3,
    aliyun_signature,
    aliyun_v3_authorization,
    aliyun_v3_canonical_request,
    twilio_signature,
)
from integrations.sms.aliyun import CHINA

__all__ = [
    "CREDENTIALS_ENV",
    "DEFAULT_CREDENTIALS",
    "aliyun_router",
    "create_app",
    "main",
    "sandbox_router",
    "twilio_router",
]

# Well-known values for a sandbox started by hand; never valid anywhere but here.
DEFAULT_CREDENTIALS = Credentials(
    account_sid="AC00000000000000000000000000000000",
    auth_token="sandbox-auth-token",
    from_number="+15005550006",
    access_key_id="LTAIsandbox",
    access_key_secret="sandbox-access-key-secret",
    sign_name="arrears",
)
_API = "/2010-04-01/Accounts/{account_sid}"


class CallbackRegistration(BaseModel):
    """`POST /_sandbox/callbacks`: where Aliyun-shaped delivery reports go (token in the URL)."""

    model_config = ConfigDict(extra="forbid")

    aliyun_url: str | None = Field(default=None, description="The SmsReport URL; None stops the pushes.")
    retry_delays: list[Annotated[float, Field(ge=0, le=60)]] = Field(
        default=[0.2, 0.5, 1.0],
        max_length=10,
        description="Seconds before each push again, if unacknowledged.",
    )


class Rendering(BaseModel):
    """`POST /_sandbox/render`: which callback to render, as which vendor, for which URL."""

    model_config = ConfigDict(extra="forbid")

    route: Literal["twilio", "aliyun"]
    event: Literal["status", "inbound"]
    url: str = Field(description="The URL the vendor would post to (signed over, for Twilio).")
    message_id: str | None = Field(default=None, description="For `status`: the sandbox's message id.")
    to: str | None = Field(
        default=None, description="For `status`, instead: the latest message to this number."
    )
    sender: str | None = Field(default=None, description="For `inbound`: the sender's number, E.164.")
    text: str | None = Field(default=None, description="For `inbound`: what they wrote.")


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def form_pairs(body: str) -> list[tuple[str, str]]:
    """What `parse_qsl(body, keep_blank_values=True)` reads, with each value's escapes decoded in
    C: `unquote` loops in Python over each `%XX`, and a SendBatchSms form holds ~20 KB of them
    (the vendor's cost in production; in a benchmark, on the same two cores as the dispatch)."""
    pairs = []
    for field in body.split("&"):
        if field:
            name, _, value = field.partition("=")
            pairs.append((_unquote_plus(name), _unquote_plus(value)))
    return pairs


def _unquote_plus(text: str) -> str:
    """`unquote_plus(text)`: a `+` is a space and `%XX` a byte of UTF-8 (invalid UTF-8 replaced).
    An ASCII text whose escapes all have two hex digits, and no backslash, goes through Python's
    own `\\xXX` decoder; anything else (a stray `%`, a backslash, a raw non-ASCII character)
    through `unquote`."""
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    if text.isascii() and "\\" not in text:
        try:
            raw = codecs.decode(text.replace("%", "\\x"), "unicode_escape")
        except UnicodeDecodeError:
            return unquote(text)
        return raw.encode("latin-1").decode("utf-8", "replace")
    return unquote(text)


def _china(dt: datetime) -> str:
    return dt.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


# -- Twilio-shaped ---------------------------------------------------------------------------------

# What an injected fault answers with
_TWILIO_FAULTS = {
    429: (20429, "Too Many Requests"),
    503: (20503, "Service Unavailable"),
    500: (20500, "Internal Server Error"),
}


def _twilio_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status,
        headers,
    )


def _twilio_refuse(status: int, headers: dict[str, str] | None) -> Response:
    return _twilio_error(status, *_TWILIO_FAULTS[status], headers)


def twilio_form(account_sid: str, m: SandboxMessage, status: str, error: str | None) -> dict[str, str]:
    """The form of a status callback, as Twilio posts it to the message's StatusCallback."""
    form = {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "MessageSid": m.id,
        "SmsSid": m.id,
        "MessageStatus": status,
        "SmsStatus": status,
        "To": m.to,
        "From": m.sender or "",
    }
    if error:
        form["ErrorCode"] = error
    return form


class _Twilio:
    """The Messages API (create, fetch, list) over one state, and the status callbacks it pushes."""

    def __init__(self, state: SandboxState) -> None:
        self.st = state
        self.creds = state.credentials

    def auth(self, request: Request, account_sid: str) -> Response | None:
        header = request.headers.get("authorization", "")
        try:
            scheme, _, encoded = header.partition(" ")
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            user = password = scheme = ""
        c = self.creds
        pairs = ((c.account_sid, c.auth_token), (c.twilio_api_key_sid, c.twilio_api_key_secret))
        ok = (
            scheme.lower() == "basic"
            and any(
                hmac.compare_digest(user.encode(), u.encode())
                & hmac.compare_digest(password.encode(), p.encode())
                for u, p in pairs
            )
            and account_sid == c.account_sid
        )
        return None if ok else _twilio_error(401, 20003, "Authenticate")

    async def account(self, account_sid: str, request: Request) -> Response:
        """The account resource (what `providers list --check` fetches)."""
        self.st.count("requests.twilio.account")
        if (denied := self.auth(request, account_sid)) is not None:
            return denied
        c = self.creds
        return _json(
            {
                "sid": c.account_sid,
                "friendly_name": "arrears sandbox",
                "status": "active",
                "type": "Full",
                "uri": f"/2010-04-01/Accounts/{c.account_sid}.json",
            }
        )

    def message_json(self, m: SandboxMessage, status: str | None = None) -> dict[str, Any]:
        if status is None:
            status, error = m.status(self.st.now(), self.st.delivery)
        else:
            error = None
        created = format_datetime(m.created_at)
        return {
            "sid": m.id,
            "account_sid": self.creds.account_sid,
            "to": m.to,
            "from": m.sender if m.sender and m.sender.startswith("+") else None,
            "messaging_service_sid": m.sender if m.sender and m.sender.startswith("MG") else None,
            "body": m.body,
            "status": status,
            "direction": "outbound-api",
            "num_segments": "1",
            "date_created": created,
            "date_updated": created,
            "date_sent": created if status in ("sent", "delivered", "undelivered") else None,
            "error_code": int(error) if error else None,
            "error_message": None,
            "price": None,
            "api_version": "2010-04-01",
            "uri": f"{_API.format(account_sid=self.creds.account_sid)}/Messages/{m.id}.json",
        }

    async def create(self, account_sid: str, request: Request) -> Response:
        self.st.count("requests.twilio.create")
        if (denied := self.auth(request, account_sid)) is not None:
            return denied
        form = dict(form_pairs((await request.body()).decode()))
        key = request.headers.get("idempotency-key")
        return await with_faults(self.st, "twilio", lambda: self.send(form, key), _twilio_refuse)

    def refused(self, to: str, body: str, sender: str | None) -> Response | None:
        """The vendor's 400 for a message it will not take, or None."""
        st = self.st
        if not is_e164(to) or st.matches("invalid_numbers", to):
            return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if st.matches("landline_numbers", to):
            return _twilio_error(400, 21614, f"'To' number {to} is not a valid mobile number")
        if st.matches("opted_out_numbers", to):
            return _twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
        if st.matches("unpermitted_numbers", to):
            return _twilio_error(400, 21408, "Permission to send an SMS has not been enabled for the region")
        if not body:
            return _twilio_error(400, 21602, "Message body is required.")
        if not sender:
            return _twilio_error(400, 21603, "A 'From' phone number is required.")
        return None

    def send(self, form: dict[str, str], key: str | None) -> Response:
        st = self.st
        to, body = form.get("To", ""), form.get("Body", "")
        sender = form.get("MessagingServiceSid") or form.get("From")
        fingerprint = (to, body, sender or "")
        if key and key in st.idempotency:
            first_print, first = st.idempotency[key]
            if first_print != fingerprint:
                return _twilio_error(409, 20409, "Idempotency-Key was used with different parameters")
            st.count("dedup.twilio")
            return _json(self.message_json(first), 201, {"Idempotent-Replayed": "true"})
        if (refused := self.refused(to, body, sender)) is not None:
            return refused
        message = SandboxMessage(
            id="SM" + uuid.uuid4().hex,
            route="twilio",
            to=to,
            body=body,
            created_at=st.now(),
            sender=sender,
            idempotency_key=key,
            status_callback=form.get("StatusCallback"),
        )
        st.record(message)
        if key:
            st.idempotency[key] = (fingerprint, message)
        if message.status_callback:
            st.push(self.push(message, st.faults.delivery_ms / 1000))
        return _json(self.message_json(message, "queued"), 201)

    async def fetch(self, account_sid: str, sid: str, request: Request) -> Response:
        self.st.count("requests.twilio.fetch")
        if (denied := self.auth(request, account_sid)) is not None:
            return denied
        message = self.st.by_id.get(sid)
        if message is None or message.route != "twilio":
            return _twilio_error(404, 20404, f"The requested resource {request.url.path} was not found")
        return _json(self.message_json(message))

    async def list(self, account_sid: str, request: Request) -> Response:
        st = self.st
        st.count("requests.twilio.list")
        if (denied := self.auth(request, account_sid)) is not None:
            return denied
        q = request.query_params
        to = q.get("To")
        size = max(1, min(1000, _int(q.get("PageSize"), 50)))
        page = max(0, _int(q.get("Page"), 0))
        pool = st.by_number.get(to, []) if to else st.messages
        found = [m for m in reversed(pool) if m.route == "twilio"]
        items = found[page * size : (page + 1) * size]
        base = _API.format(account_sid=self.creds.account_sid) + "/Messages.json"
        more = (page + 1) * size < len(found)
        args = {**({"To": to} if to else {}), "PageSize": size}
        return _json(
            {
                "messages": [self.message_json(m) for m in items],
                "page": page,
                "page_size": size,
                "uri": f"{base}?{urlencode({**args, 'Page': page})}",
                "next_page_uri": f"{base}?{urlencode({**args, 'Page': page + 1})}" if more else None,
            }
        )

    async def push(self, m: SandboxMessage, delay: float) -> None:
        """`sent` at once, the final status after `delay` seconds: one POST each, as Twilio does."""
        async with callback_client() as client:
            await self.callback(client, m, "sent", None)
            await asyncio.sleep(delay)
            final, error = ("undelivered", "30003") if m.undeliverable else ("delivered", None)
            await self.callback(client, m, final, error)

    async def callback(
        self, client: httpx.AsyncClient, m: SandboxMessage, status: str, error: str | None
    ) -> None:
        st, url = self.st, m.status_callback or ""
        fault = st.take_callback_fault("twilio")
        if fault == "drop":
            st.settle(st.log_callback("twilio", url, [m.id], status=status), "dropped")
            return
        form = twilio_form(self.creds.account_sid, m, status, error)
        for copy in range(2 if fault == "duplicate" else 1):
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": "TwilioProxy/1.1",
                "X-Twilio-Signature": twilio_signature(self.creds.auth_token, url, form.items()),
            }
            entry = st.log_callback("twilio", url, [m.id], status=status, copy=copy + 1)
            answer = await post_callback(client, entry, url, urlencode(form).encode(), headers)
            st.settle(entry, "delivered" if answer is not None and answer.is_success else "failed")


def twilio_router(state: SandboxState) -> APIRouter:
    """The Twilio-shaped Messages API (`/2010-04-01/Accounts/{AccountSid}/Messages…`) over `state`."""
    twilio = _Twilio(state)
    router = APIRouter()
    router.add_api_route(_API + "/Messages.json", twilio.create, methods=["POST"])
    router.add_api_route(_API + "/Messages/{sid}.json", twilio.fetch, methods=["GET"])
    router.add_api_route(_API + "/Messages.json", twilio.list, methods=["GET"])
    router.add_api_route(_API + ".json", twilio.account, methods=["GET"])
    return router


# -- Aliyun-shaped ---------------------------------------------------------------------------------

_ALIYUN_FAULTS = {
    429: ("Throttling.User", "Request was denied due to user flow control."),
    503: ("ServiceUnavailable", "The service is unavailable."),
    500: ("InternalError", "The request processing has failed."),
}


def _aliyun_answer(
    code: str, message: str, status: int = 200, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    return _json(
        {"Code": code, "Message": message, "RequestId": str(uuid.uuid4()).upper(), **extra}, status, headers
    )


def _aliyun_refuse(status: int, headers: dict[str, str] | None) -> Response:
    code, message = _ALIYUN_FAULTS[status]
    return _aliyun_answer(code, message, status, headers)


def aliyun_status(m: SandboxMessage, now: datetime, delivery: timedelta) -> tuple[int, str]:
    """(SendStatus, ErrCode) as `QuerySendDetails` reports them: 1 waiting, 2 failed, 3 delivered."""
    status, _ = m.status(now, delivery)
    return {"sent": (1, ""), "delivered": (3, "DELIVERED")}.get(status, (2, "MOBILE_NOT_ON_SERVICE"))


def aliyun_item(m: SandboxMessage, success: bool, now: datetime) -> dict[str, Any]:
    """One SmsReport item, as Aliyun pushes it."""
    return {
        "phone_number": to_aliyun(m.to),
        "send_time": _china(m.created_at),
        "report_time": _china(now),
        "success": success,
        "err_code": "DELIVERED" if success else "MOBILE_NOT_ON_SERVICE",
        "err_msg": "成功" if success else "用户停机",
        "biz_id": m.biz_id,
        "out_id": m.out_id or "",
    }


def _batch(params: dict[str, str], batch: bool) -> tuple[list[Any], list[Any], list[Any]]:
    """(numbers, signatures, template values) of `SendBatchSms` or `SendSms`; ValueError if not JSON."""
    if batch:
        numbers = json.loads(params.get("PhoneNumberJson", "[]"))
        signs = json.loads(params.get("SignNameJson", "[]"))
        values = json.loads(params.get("TemplateParamJson") or "null") or [{}] * len(numbers)
    else:
        numbers = [n for n in params.get("PhoneNumbers", "").split(",") if n]
        signs = [params.get("SignName", "")] * len(numbers)
        values = [json.loads(params.get("TemplateParam") or "{}")] * len(numbers)
    return numbers, signs, values


class _Aliyun:
    """The dysmsapi RPC endpoint (`SendSms`, `SendBatchSms`, `QuerySendDetails`) over one state,
    and the SmsReport arrays it pushes."""

    def __init__(self, state: SandboxState) -> None:
        self.st = state
        self.creds = state.credentials

    async def rpc(self, request: Request) -> Response:
        body = await request.body()
        params = dict(request.query_params)
        if request.method == "POST" and body:
            params.update(form_pairs(body.decode()))
        if request.headers.get("authorization", "").startswith("ACS3-"):
            action = request.headers.get("x-acs-action", "")
            refused = self.unsigned_v3(request, body)
        else:
            action = params.get("Action", "")
            refused = self.unsigned(request.method, params)
        params["Action"] = action
        self.st.count(f"requests.aliyun.{action or 'none'}")
        if refused is not None:
            return refused
        if action == "SendSms":
            return await with_faults(
                self.st, "aliyun", lambda: self.send(params, batch=False), _aliyun_refuse
            )
        if action == "SendBatchSms":
            return await with_faults(self.st, "aliyun", lambda: self.send(params, batch=True), _aliyun_refuse)
        if action == "QuerySendDetails":
            return self.query(params)
        return _aliyun_answer("InvalidAction.NotFound", "Specified api is not found.", 404)

    def unsigned(self, method: str, params: dict[str, str]) -> Response | None:
        """The vendor's refusal of a request not signed by the sandbox's AccessKey, stale or replayed."""
        for name in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp", "Version"):
            if not params.get(name):
                return _aliyun_answer(f"MissingParameter.{name}", f"{name} is mandatory", 400)
        if params["AccessKeyId"] != self.creds.access_key_id:
            return _aliyun_answer("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        expected = aliyun_signature(self.creds.access_key_secret, method, params.items())
        if not hmac.compare_digest(expected.encode(), params["Signature"].encode()):
            return _aliyun_answer("SignatureDoesNotMatch", "Specified signature is not matched.", 400)
        return self.fresh(params["Timestamp"], params["SignatureNonce"])

    def unsigned_v3(self, request: Request, body: bytes) -> Response | None:
        """The vendor's refusal of a V3 request (`ACS3-HMAC-SHA256`) not signed by the sandbox's AccessKey.

        Only the headers the `Authorization` header names are signed; the hashed payload must be
        the body's own hash; the nonce and the `x-acs-date` are checked as for the RPC signature."""
        authorization = request.headers["authorization"]
        algorithm, _, rest = authorization.partition(" ")
        fields: dict[str, str] = {}
        for part in rest.split(","):
            name, _, value = part.strip().partition("=")
            fields[name] = value
        if algorithm != ACS3:
            return _aliyun_answer(
                "InvalidParameter.SignatureMethod", "Only ACS3-HMAC-SHA256 is supported.", 400
            )
        for name in ("Credential", "SignedHeaders", "Signature"):
            if not fields.get(name):
                return _aliyun_answer("IncompleteSignature", f"The Authorization header lacks {name}.", 400)
        headers = request.headers
        for name in ("x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce"):
            if not headers.get(name):
                return _aliyun_answer(f"MissingParameter.{name}", f"{name} is mandatory", 400)
        if fields["Credential"] != self.creds.access_key_id:
            return _aliyun_answer("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        signed = fields["SignedHeaders"].split(";")
        if not {"host", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"} <= set(signed):
            return _aliyun_answer("IncompleteSignature", "Required headers are not signed.", 400)
        payload_hash = hashlib.sha256(body).hexdigest()
        if headers.get("x-acs-content-sha256") != payload_hash:
            return _aliyun_answer("IncompleteSignature", "x-acs-content-sha256 is not the body's hash.", 400)
        canonical = aliyun_v3_canonical_request(
            request.method,
            request.url.path,
            parse_qsl(request.url.query, keep_blank_values=True),
            {name: headers.get(name, "") for name in signed},
            signed,
            payload_hash,
        )
        expected = aliyun_v3_authorization(
            self.creds.access_key_secret, self.creds.access_key_id, canonical, ";".join(signed)
        )
        given_signature = fields["Signature"]
        expected_signature = expected.rpartition("Signature=")[2]
        if not hmac.compare_digest(given_signature.encode(), expected_signature.encode()):
            return _aliyun_answer("SignatureDoesNotMatch", "Specified signature is not matched.", 400)
        if headers["x-acs-version"] != "2017-05-25":
            return _aliyun_answer("InvalidVersion", "Specified parameter Version is not valid.", 400)
        return self.fresh(headers["x-acs-date"], headers["x-acs-signature-nonce"])

    def fresh(self, timestamp: str, nonce: str) -> Response | None:
        """The vendor's refusal of a stale timestamp or a nonce already used, or None."""
        now = self.st.now()
        try:
            stamp = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return _aliyun_answer("InvalidTimeStamp.Format", "Specified time stamp is not valid.", 400)
        if abs(now - stamp) > timedelta(minutes=15):
            return _aliyun_answer("InvalidTimeStamp.Expired", "Specified time stamp is expired.", 400)
        if not self.st.use_nonce(nonce, now):
            return _aliyun_answer("SignatureNonceUsed", "Specified signature nonce was used already.", 400)
        return None

    def refused(
        self, params: dict[str, str], numbers: list[Any], signs: list[Any], values: list[Any], limit: int
    ) -> Response | None:
        """The vendor's refusal of a whole send (one bad number refuses the batch), or None."""
        if not numbers or len(numbers) > limit or len(signs) != len(numbers) or len(values) != len(numbers):
            return _aliyun_answer("isv.INVALID_PARAMETERS", "Parameters are not valid.")
        if any(sign != self.creds.sign_name for sign in signs):
            return _aliyun_answer("isv.SMS_SIGNATURE_ILLEGAL", "The signature is not approved.")
        if not params.get("TemplateCode", ""):
            return _aliyun_answer("isv.SMS_TEMPLATE_ILLEGAL", "The template is not approved.")
        if not all(isinstance(v, dict) for v in values):
            return _aliyun_answer("isv.INVALID_JSON_PARAM", "JSON parameter is not valid.")
        out_id = params.get("OutId") or None
        if out_id and len(out_id) > 256:
            return _aliyun_answer("isv.INVALID_PARAMETERS", "OutId is too long.")
        st = self.st
        e164 = [from_aliyun(str(n)) for n in numbers]
        for number in e164:
            if (
                not is_e164(number)
                or st.matches("invalid_numbers", number)
                or st.matches("landline_numbers", number)
            ):
                return _aliyun_answer("isv.MOBILE_NUMBER_ILLEGAL", "Illegal mobile number.")
        if any(st.matches("limited_numbers", number) for number in e164):
            return _aliyun_answer("isv.BUSINESS_LIMIT_CONTROL", "Flow control of the number.")
        return None

    def send(self, params: dict[str, str], *, batch: bool) -> Response:
        try:
            numbers, signs, values = _batch(params, batch)
        except ValueError:
            return _aliyun_answer("isv.INVALID_JSON_PARAM", "JSON parameter is not valid.")
        if (refused := self.refused(params, numbers, signs, values, 100 if batch else 1000)) is not None:
            return refused
        st, template, out_id = self.st, params["TemplateCode"], params.get("OutId") or None
        biz_id = f"{secrets.randbelow(10**15):015d}^{secrets.randbelow(10**6)}"
        now = st.now()
        sent: list[SandboxMessage] = []
        for n, (number, sign, value) in enumerate(zip(numbers, signs, values, strict=True)):
            text = "; ".join(f"{k}={v}" for k, v in value.items())
            sent.append(
                SandboxMessage(
                    id=f"{biz_id}/{n}",
                    route="aliyun",
                    to=from_aliyun(str(number)),
                    body=f"【{sign}】{template}: {text}",
                    created_at=now,
                    sender=sign,
                    template=template,
                    params={str(k): str(v) for k, v in value.items()},
                    out_id=out_id,
                    biz_id=biz_id,
                )
            )
            st.record(sent[-1])
        if st.callback_target.aliyun_url:
            st.push(self.push(sent, st.faults.delivery_ms / 1000, st.callback_target))
        return _aliyun_answer("OK", "OK", BizId=biz_id)

    def query(self, params: dict[str, str]) -> Response:
        st = self.st
        number = from_aliyun(params.get("PhoneNumber", ""))
        day = params.get("SendDate", "")
        size = max(1, min(50, _int(params.get("PageSize"), 10)))
        page = max(1, _int(params.get("CurrentPage"), 1))
        biz_id = params.get("BizId")
        found = [
            m
            for m in reversed(st.by_number.get(number, []))
            if m.route == "aliyun"
            and m.created_at.astimezone(CHINA).strftime("%Y%m%d") == day
            and (not biz_id or m.biz_id == biz_id)
        ]
        dtos = []
        for m in found[(page - 1) * size : page * size]:
            code, err = aliyun_status(m, st.now(), st.delivery)
            dtos.append(
                {
                    "PhoneNum": to_aliyun(m.to),
                    "SendStatus": code,
                    "ErrCode": err,
                    "TemplateCode": m.template,
                    "Content": m.body,
                    "SendDate": _china(m.created_at),
                    "ReceiveDate": _china(m.created_at) if code != 1 else "",
                    "OutId": m.out_id or "",
                }
            )
        return _aliyun_answer("OK", "OK", TotalCount=len(found), SmsSendDetailDTOs={"SmsSendDetailDTO": dtos})

    async def push(self, messages: list[SandboxMessage], delay: float, target: CallbackTarget) -> None:
        """One SmsReport array for the messages of one send, pushed again until acknowledged."""
        st = self.st
        await asyncio.sleep(delay)
        url = target.aliyun_url or ""
        ids = [m.id for m in messages]
        fault = st.take_callback_fault("aliyun")
        if fault == "drop":
            st.settle(st.log_callback("aliyun", url, ids), "dropped")
            return
        items = [aliyun_item(m, not m.undeliverable, st.now()) for m in messages]
        body = json.dumps(items, ensure_ascii=False).encode()
        async with callback_client() as client:
            for copy in range(2 if fault == "duplicate" else 1):
                await self.push_until_acknowledged(client, target, ids, body, copy + 1)

    async def push_until_acknowledged(
        self, client: httpx.AsyncClient, target: CallbackTarget, ids: list[str], body: bytes, copy: int
    ) -> None:
        st, url = self.st, target.aliyun_url or ""
        for n, wait in enumerate((0.0, *target.retry_delays)):
            await asyncio.sleep(wait)
            headers = {"Content-Type": "application/json"}  # unsigned, as Aliyun sends it
            entry = st.log_callback("aliyun", url, ids, attempt=n + 1, copy=copy)
            answer = await post_callback(client, entry, url, body, headers)
            # Aliyun counts any 2xx as received, whatever the body says; only a non-2xx asks again
            acknowledged = answer is not None and answer.is_success
            st.settle(entry, "delivered" if acknowledged else "failed")
            if acknowledged:
                return
        entry["gave_up"] = True
        st.count("callbacks.aliyun.gave_up")


def aliyun_router(state: SandboxState) -> APIRouter:
    """The Aliyun-shaped RPC endpoint (`/`, GET or POST) over `state`."""
    router = APIRouter()
    router.add_api_route("/", _Aliyun(state).rpc, methods=["GET", "POST"])
    return router


# -- the sandbox's own controls --------------------------------------------------------------------


class _Controls:
    """What was received, the reports the vendors would push, and where Aliyun-shaped ones go."""

    def __init__(self, state: SandboxState) -> None:
        self.st = state

    async def messages(
        self,
        route: str | None = None,
        to: str | None = None,
        idempotency_key: str | None = None,
        out_id: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> dict[str, Any]:
        pool = self.st.by_number.get(to, []) if to else self.st.messages
        found = [
            m
            for m in pool
            if (not route or m.route == route)
            and (not idempotency_key or m.idempotency_key == idempotency_key)
            and (not out_id or m.out_id == out_id)
        ]
        return {"total": len(found), "messages": [m.public() for m in found[offset : offset + limit]]}

    async def stats(self) -> dict[str, Any]:
        st = self.st
        return {
            "messages": len(st.messages),
            "pending_callbacks": len(st.pushes),
            "counters": dict(st.counters),
        }

    async def aliyun_reports(self, limit: int = 10_000) -> list[dict[str, Any]]:
        """SmsReport items the vendor would push for the Aliyun-shaped messages received so far."""
        st, out = self.st, []
        for m in st.messages:
            if m.route != "aliyun":
                continue
            code, _ = aliyun_status(m, st.now(), st.delivery)
            if code == 1:
                continue
            out.append(aliyun_item(m, code == 3, st.now()))
            if len(out) >= limit:
                break
        return out

    async def twilio_reports(self, limit: int = 10_000) -> list[dict[str, str]]:
        """Status-callback forms Twilio would post (to each message's StatusCallback) so far."""
        st = self.st
        found = [m for m in st.messages if m.route == "twilio"][:limit]
        return [twilio_form(st.credentials.account_sid, m, *m.status(st.now(), st.delivery)) for m in found]

    async def register_callbacks(self, registration: CallbackRegistration) -> dict[str, Any]:
        """Where Aliyun-shaped reports go from now on (sends already made keep their target)."""
        self.st.callback_target = CallbackTarget(registration.aliyun_url, tuple(registration.retry_delays))
        return self.callback_target()

    def callback_target(self) -> dict[str, Any]:
        t = self.st.callback_target
        return {"aliyun_url": t.aliyun_url, "retry_delays": list(t.retry_delays)}

    async def render(self, rendering: Rendering) -> dict[str, Any]:
        """A callback exactly as the vendor would post it to `url`: `{url, headers, body}`."""
        st, creds = self.st, self.st.credentials
        found = st.by_id.get(rendering.message_id or "")
        if found is None and rendering.to:
            found = next(
                (m for m in reversed(st.by_number.get(rendering.to, [])) if m.route == rendering.route), None
            )
        if rendering.event == "status" and (found is None or found.route != rendering.route):
            return {"error": "no such message"}
        if found is not None:
            m = found
            status, error = m.status(st.now(), st.delivery)
        if rendering.route == "twilio":
            if rendering.event == "status":
                form = twilio_form(creds.account_sid, m, status, error)
            else:
                form = {
                    "AccountSid": creds.account_sid,
                    "ApiVersion": "2010-04-01",
                    "MessageSid": "SM" + uuid.uuid4().hex,
                    "SmsSid": "",
                    "SmsMessageSid": "",
                    "From": rendering.sender or "",
                    "To": creds.from_number,
                    "Body": rendering.text or "",
                    "NumMedia": "0",
                    "NumSegments": "1",
                }
                form["SmsSid"] = form["SmsMessageSid"] = form["MessageSid"]
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": "TwilioProxy/1.1",
                "X-Twilio-Signature": twilio_signature(creds.auth_token, rendering.url, form.items()),
            }
            return {"url": rendering.url, "headers": headers, "body": urlencode(form)}
        if rendering.event == "status":
            items = [aliyun_item(m, status == "delivered", st.now())]
        else:
            items = [
                {
                    "phone_number": to_aliyun(rendering.sender or ""),
                    "send_time": _china(st.now()),
                    "content": rendering.text or "",
                    "sign_name": creds.sign_name,
                    "dest_code": "1234",
                    "sequence_id": secrets.randbelow(10**12),
                }
            ]
        body = json.dumps(items, ensure_ascii=False)
        return {"url": rendering.url, "headers": {"Content-Type": "application/json"}, "body": body}

    async def callbacks(self, route: str | None = None, message_id: str | None = None) -> dict[str, Any]:
        """Every push attempt so far (dropped ones too), and how many pushes are still to come."""
        found = [
            c
            for c in self.st.callbacks
            if (not route or c["route"] == route) and (not message_id or message_id in c["message_ids"])
        ]
        return {"callbacks": found, "pending": len(self.st.pushes), **self.callback_target()}


def sandbox_router(state: SandboxState) -> APIRouter:
    """`/_sandbox/…`: the shared controls (health, reset, faults) and the SMS sandbox's own."""
    router = control_router(
        state,
        Faults,
        health=lambda: {"ok": True, "messages": len(state.messages)},
        set_faults=state.set_faults,
    )
    c = _Controls(state)
    router.add_api_route("/messages", c.messages, methods=["GET"])
    router.add_api_route("/stats", c.stats, methods=["GET"])
    router.add_api_route("/reports/aliyun", c.aliyun_reports, methods=["GET"])
    router.add_api_route("/reports/twilio", c.twilio_reports, methods=["GET"])
    router.add_api_route("/callbacks", c.register_callbacks, methods=["POST"])
    router.add_api_route("/callbacks", c.callbacks, methods=["GET"])
    router.add_api_route("/render", c.render, methods=["POST"])
    return router


def create_app(credentials: Credentials = DEFAULT_CREDENTIALS, state: SandboxState | None = None) -> FastAPI:
    """The sandbox app around one in-memory state (a fresh one unless given)."""
    st = state or SandboxState(credentials)
    return create_sandbox_app(
        "arrears SMS sandbox", st, twilio_router(st), aliyun_router(st), sandbox_router(st)
    )


def main(argv: list[str] | None = None) -> None:
    """`python -m integrations.sms.sandbox_server --port N`: serve until interrupted."""
    serve(
        argv,
        module="integrations.sms.sandbox_server",
        doc=__doc__,
        port=8025,
        label="SMS sandbox",
        create_app=create_app,
        credentials=Credentials,
        defaults=DEFAULT_CREDENTIALS,
        backlog=2048,
        uvicorn_backlog=2048,
    )


if __name__ == "__main__":
    main()
