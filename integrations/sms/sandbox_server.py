"""A sandbox SMS vendor: one FastAPI app speaking both wire formats our clients speak, a router each.

- Twilio-shaped: `POST/GET /2010-04-01/Accounts/{AccountSid}/Messages.json`, `GET …/Messages/{Sid}.json`,
  Basic auth, deduplication by `Idempotency-Key` (a resend returns the first message).
- Aliyun-shaped: the RPC endpoint `/` with `SendSms`, `SendBatchSms`, `QuerySendDetails`, checking the
  AccessKey, the HMAC-SHA1 signature, the timestamp and nonce replay. Like the vendor, it does
  not deduplicate, and it refuses a whole batch when one number is illegal or flow-controlled.
- `/_sandbox/…`: `health`, `messages` (what was received), `stats`, `reset`, `faults` (latency,
  bursts of 429/503 with Retry-After, 500 after executing, timeouts, numbers refused by pattern),
  and `reports/{aliyun,twilio}`: the delivery reports the vendor would push.
- Callbacks pushed, as the vendors push them, in the background: a Twilio-shaped send with a
  `StatusCallback` gets form-encoded status callbacks there (`sent` at once, then `delivered` or
  `undelivered` after `delivery_ms`), signed with `X-Twilio-Signature` under the auth token, sent
  once each. Aliyun-shaped sends get an SmsReport array after `delivery_ms` at the URL registered
  with `POST /_sandbox/callbacks` (`{"aliyun_url", "secret", "retry_delays"}`), signed with our
  `X-Arrears-Signature` when a secret is given (the lender's signing relay: Aliyun does not sign)
  and pushed again until answered `{"code": 0}`, after 0.2, 0.5 and 1 s (the vendor's 1, 5 and 10
  minutes, scaled down). Faults `drop_callbacks` (lost) and `duplicate_callbacks` (sent twice)
  count down per push; `GET /_sandbox/callbacks` lists every attempt, dropped ones included.

Run it alone with `python -m integrations.sms.sandbox_server --port 8025`; the cycle and the tests
start it in a separate process through `integrations.sandbox.start_sandbox`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

import httpx
from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from integrations._sandbox import (
    CREDENTIALS_ENV,
    control_router,
    create_sandbox_app,
    post_callback,
    serve,
    signature_header,
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
from integrations.sms._signing import aliyun_signature, twilio_signature
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
CALLBACK_TIMEOUT = 5.0  # seconds a receiver has to answer one push
SIGNATURE_HEADER = "X-Arrears-Signature"


class CallbackRegistration(BaseModel):
    """`POST /_sandbox/callbacks`: where Aliyun-shaped delivery reports go, and how they are signed."""

    model_config = ConfigDict(extra="forbid")

    aliyun_url: str | None = Field(default=None, description="The SmsReport URL; None stops the pushes.")
    secret: str | None = Field(default=None, description="Signs each push with X-Arrears-Signature.")
    retry_delays: list[Annotated[float, Field(ge=0, le=60)]] = Field(
        default=[0.2, 0.5, 1.0],
        max_length=10,
        description="Seconds before each push again, if unacknowledged.",
    )


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


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
        ok = (
            scheme.lower() == "basic"
            and hmac.compare_digest(user.encode(), self.creds.account_sid.encode())
            and hmac.compare_digest(password.encode(), self.creds.auth_token.encode())
            and account_sid == self.creds.account_sid
        )
        return None if ok else _twilio_error(401, 20003, "Authenticate")

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
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
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
        async with httpx.AsyncClient(timeout=CALLBACK_TIMEOUT) as client:
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
    router = APIRouter(prefix=_API)
    router.add_api_route("/Messages.json", twilio.create, methods=["POST"])
    router.add_api_route("/Messages/{sid}.json", twilio.fetch, methods=["GET"])
    router.add_api_route("/Messages.json", twilio.list, methods=["GET"])
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


def _acknowledged(answer: httpx.Response) -> bool:
    """Aliyun wants `{"code": 0}`; anything else is pushed again."""
    try:
        payload = answer.json()
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("code") in (0, "0")


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
        params = dict(request.query_params)
        if request.method == "POST":
            params.update(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        action = params.get("Action", "")
        self.st.count(f"requests.aliyun.{action or 'none'}")
        if (refused := self.unsigned(request.method, params)) is not None:
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
        now = self.st.now()
        try:
            stamp = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return _aliyun_answer("InvalidTimeStamp.Format", "Specified time stamp is not valid.", 400)
        if abs(now - stamp) > timedelta(minutes=15):
            return _aliyun_answer("InvalidTimeStamp.Expired", "Specified time stamp is expired.", 400)
        if not self.st.use_nonce(params["SignatureNonce"], now):
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
        async with httpx.AsyncClient(timeout=CALLBACK_TIMEOUT) as client:
            for copy in range(2 if fault == "duplicate" else 1):
                await self.push_until_acknowledged(client, target, ids, body, copy + 1)

    async def push_until_acknowledged(
        self, client: httpx.AsyncClient, target: CallbackTarget, ids: list[str], body: bytes, copy: int
    ) -> None:
        st, url = self.st, target.aliyun_url or ""
        for n, wait in enumerate((0.0, *target.retry_delays)):
            await asyncio.sleep(wait)
            headers = {"Content-Type": "application/json"}
            if target.secret:
                headers[SIGNATURE_HEADER] = signature_header(target.secret, int(time.time()), body)
            entry = st.log_callback("aliyun", url, ids, attempt=n + 1, copy=copy)
            answer = await post_callback(client, entry, url, body, headers)
            acknowledged = answer is not None and answer.is_success and _acknowledged(answer)
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
        self.st.callback_target = CallbackTarget(
            registration.aliyun_url, registration.secret, tuple(registration.retry_delays)
        )
        return self.callback_target()

    def callback_target(self) -> dict[str, Any]:
        t = self.st.callback_target
        return {"aliyun_url": t.aliyun_url, "signed": bool(t.secret), "retry_delays": list(t.retry_delays)}

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
