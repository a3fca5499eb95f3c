"""A sandbox SMS vendor: one FastAPI app speaking both wire formats our clients speak.

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
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from integrations._sandbox import (
    CREDENTIALS_ENV,
    control_routes,
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

__all__ = ["CREDENTIALS_ENV", "DEFAULT_CREDENTIALS", "create_app", "main"]

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


def _aliyun_answer(
    code: str, message: str, status: int = 200, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    return _json(
        {"Code": code, "Message": message, "RequestId": str(uuid.uuid4()).upper(), **extra}, status, headers
    )


# What an injected fault answers with, in each wire format
_TWILIO_FAULTS = {
    429: (20429, "Too Many Requests"),
    503: (20503, "Service Unavailable"),
    500: (20500, "Internal Server Error"),
}
_ALIYUN_FAULTS = {
    429: ("Throttling.User", "Request was denied due to user flow control."),
    503: ("ServiceUnavailable", "The service is unavailable."),
    500: ("InternalError", "The request processing has failed."),
}


def _twilio_refuse(status: int, headers: dict[str, str] | None) -> Response:
    return _twilio_error(status, *_TWILIO_FAULTS[status], headers)


def _aliyun_refuse(status: int, headers: dict[str, str] | None) -> Response:
    code, message = _ALIYUN_FAULTS[status]
    return _aliyun_answer(code, message, status, headers)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _acknowledged(answer: httpx.Response) -> bool:
    """Aliyun wants `{"code": 0}`; anything else is pushed again."""
    try:
        payload = answer.json()
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("code") in (0, "0")


def _china(dt: datetime) -> str:
    return dt.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


def create_app(credentials: Credentials = DEFAULT_CREDENTIALS, state: SandboxState | None = None) -> FastAPI:
    """The sandbox app around one in-memory state (a fresh one unless given)."""
    st = state or SandboxState(credentials)
    app = FastAPI(
        title="arrears SMS sandbox", docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json"
    )
    app.state.sandbox = st
    creds = st.credentials

    # -- Twilio-shaped -------------------------------------------------------------------------

    def twilio_auth(request: Request, account_sid: str) -> Response | None:
        header = request.headers.get("authorization", "")
        try:
            scheme, _, encoded = header.partition(" ")
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            user = password = scheme = ""
        ok = (
            scheme.lower() == "basic"
            and hmac.compare_digest(user.encode(), creds.account_sid.encode())
            and hmac.compare_digest(password.encode(), creds.auth_token.encode())
            and account_sid == creds.account_sid
        )
        return None if ok else _twilio_error(401, 20003, "Authenticate")

    def twilio_json(m: SandboxMessage, status: str | None = None) -> dict[str, Any]:
        if status is None:
            status, error = m.status(st.now(), st.delivery)
        else:
            error = None
        created = format_datetime(m.created_at)
        return {
            "sid": m.id,
            "account_sid": creds.account_sid,
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
            "uri": f"{_API.format(account_sid=creds.account_sid)}/Messages/{m.id}.json",
        }

    @app.post("/2010-04-01/Accounts/{account_sid}/Messages.json")
    async def twilio_create(account_sid: str, request: Request) -> Response:
        st.count("requests.twilio.create")
        if (denied := twilio_auth(request, account_sid)) is not None:
            return denied
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        key = request.headers.get("idempotency-key")

        def run() -> Response:
            to, body = form.get("To", ""), form.get("Body", "")
            sender = form.get("MessagingServiceSid") or form.get("From")
            fingerprint = (to, body, sender or "")
            if key and key in st.idempotency:
                first_print, first = st.idempotency[key]
                if first_print != fingerprint:
                    return _twilio_error(409, 20409, "Idempotency-Key was used with different parameters")
                st.count("dedup.twilio")
                return _json(twilio_json(first), 201, {"Idempotent-Replayed": "true"})
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
                st.push(twilio_push(message, st.faults.delivery_ms / 1000))
            return _json(twilio_json(message, "queued"), 201)

        return await with_faults(st, "twilio", run, _twilio_refuse)

    @app.get("/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json")
    async def twilio_fetch(account_sid: str, sid: str, request: Request) -> Response:
        st.count("requests.twilio.fetch")
        if (denied := twilio_auth(request, account_sid)) is not None:
            return denied
        message = st.by_id.get(sid)
        if message is None or message.route != "twilio":
            return _twilio_error(404, 20404, f"The requested resource {request.url.path} was not found")
        return _json(twilio_json(message))

    @app.get("/2010-04-01/Accounts/{account_sid}/Messages.json")
    async def twilio_list(account_sid: str, request: Request) -> Response:
        st.count("requests.twilio.list")
        if (denied := twilio_auth(request, account_sid)) is not None:
            return denied
        q = request.query_params
        to = q.get("To")
        size = max(1, min(1000, _int(q.get("PageSize"), 50)))
        page = max(0, _int(q.get("Page"), 0))
        pool = st.by_number.get(to, []) if to else st.messages
        found = [m for m in reversed(pool) if m.route == "twilio"]
        items = found[page * size : (page + 1) * size]
        base = _API.format(account_sid=creds.account_sid) + "/Messages.json"
        more = (page + 1) * size < len(found)
        args = {**({"To": to} if to else {}), "PageSize": size}
        return _json(
            {
                "messages": [twilio_json(m) for m in items],
                "page": page,
                "page_size": size,
                "uri": f"{base}?{urlencode({**args, 'Page': page})}",
                "next_page_uri": f"{base}?{urlencode({**args, 'Page': page + 1})}" if more else None,
            }
        )

    # -- Aliyun-shaped -------------------------------------------------------------------------

    @app.api_route("/", methods=["GET", "POST"])
    async def aliyun(request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            params.update(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        action = params.get("Action", "")
        st.count(f"requests.aliyun.{action or 'none'}")
        for name in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp", "Version"):
            if not params.get(name):
                return _aliyun_answer(f"MissingParameter.{name}", f"{name} is mandatory", 400)
        if params["AccessKeyId"] != creds.access_key_id:
            return _aliyun_answer("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        expected = aliyun_signature(creds.access_key_secret, request.method, params.items())
        if not hmac.compare_digest(expected.encode(), params["Signature"].encode()):
            return _aliyun_answer("SignatureDoesNotMatch", "Specified signature is not matched.", 400)
        now = st.now()
        try:
            stamp = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return _aliyun_answer("InvalidTimeStamp.Format", "Specified time stamp is not valid.", 400)
        if abs(now - stamp) > timedelta(minutes=15):
            return _aliyun_answer("InvalidTimeStamp.Expired", "Specified time stamp is expired.", 400)
        if not st.use_nonce(params["SignatureNonce"], now):
            return _aliyun_answer("SignatureNonceUsed", "Specified signature nonce was used already.", 400)
        if action == "SendSms":
            return await with_faults(st, "aliyun", lambda: aliyun_send(params, batch=False), _aliyun_refuse)
        if action == "SendBatchSms":
            return await with_faults(st, "aliyun", lambda: aliyun_send(params, batch=True), _aliyun_refuse)
        if action == "QuerySendDetails":
            return aliyun_query(params)
        return _aliyun_answer("InvalidAction.NotFound", "Specified api is not found.", 404)

    def aliyun_send(params: dict[str, str], *, batch: bool) -> Response:
        try:
            if batch:
                numbers = json.loads(params.get("PhoneNumberJson", "[]"))
                signs = json.loads(params.get("SignNameJson", "[]"))
                values = json.loads(params.get("TemplateParamJson") or "null") or [{}] * len(numbers)
            else:
                numbers = [n for n in params.get("PhoneNumbers", "").split(",") if n]
                signs = [params.get("SignName", "")] * len(numbers)
                values = [json.loads(params.get("TemplateParam") or "{}")] * len(numbers)
        except ValueError:
            return _aliyun_answer("isv.INVALID_JSON_PARAM", "JSON parameter is not valid.")
        limit = 100 if batch else 1000
        if not numbers or len(numbers) > limit or len(signs) != len(numbers) or len(values) != len(numbers):
            return _aliyun_answer("isv.INVALID_PARAMETERS", "Parameters are not valid.")
        if any(sign != creds.sign_name for sign in signs):
            return _aliyun_answer("isv.SMS_SIGNATURE_ILLEGAL", "The signature is not approved.")
        template = params.get("TemplateCode", "")
        if not template:
            return _aliyun_answer("isv.SMS_TEMPLATE_ILLEGAL", "The template is not approved.")
        if not all(isinstance(v, dict) for v in values):
            return _aliyun_answer("isv.INVALID_JSON_PARAM", "JSON parameter is not valid.")
        out_id = params.get("OutId") or None
        if out_id and len(out_id) > 256:
            return _aliyun_answer("isv.INVALID_PARAMETERS", "OutId is too long.")
        e164 = [from_aliyun(str(n)) for n in numbers]
        for number in e164:
            if (
                not is_e164(number)
                or st.matches("invalid_numbers", number)
                or st.matches("landline_numbers", number)
            ):
                return _aliyun_answer("isv.MOBILE_NUMBER_ILLEGAL", "Illegal mobile number.")
        for number in e164:
            if st.matches("limited_numbers", number):
                return _aliyun_answer("isv.BUSINESS_LIMIT_CONTROL", "Flow control of the number.")
        biz_id = f"{secrets.randbelow(10**15):015d}^{secrets.randbelow(10**6)}"
        now = st.now()
        sent: list[SandboxMessage] = []
        for n, (number, sign, value) in enumerate(zip(e164, signs, values, strict=True)):
            text = "; ".join(f"{k}={v}" for k, v in value.items())
            sent.append(
                SandboxMessage(
                    id=f"{biz_id}/{n}",
                    route="aliyun",
                    to=number,
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
            st.push(aliyun_push(sent, st.faults.delivery_ms / 1000, st.callback_target))
        return _aliyun_answer("OK", "OK", BizId=biz_id)

    def aliyun_status(m: SandboxMessage) -> tuple[int, str]:
        status, _ = m.status(st.now(), st.delivery)
        return {"sent": (1, ""), "delivered": (3, "DELIVERED")}.get(status, (2, "MOBILE_NOT_ON_SERVICE"))

    def aliyun_query(params: dict[str, str]) -> Response:
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
            code, err = aliyun_status(m)
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

    # -- the sandbox's own controls ------------------------------------------------------------

    control_routes(
        app, st, Faults, health=lambda: {"ok": True, "messages": len(st.messages)}, set_faults=st.set_faults
    )

    @app.get("/_sandbox/messages")
    async def messages(
        route: str | None = None,
        to: str | None = None,
        idempotency_key: str | None = None,
        out_id: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> dict[str, Any]:
        pool = st.by_number.get(to, []) if to else st.messages
        found = [
            m
            for m in pool
            if (not route or m.route == route)
            and (not idempotency_key or m.idempotency_key == idempotency_key)
            and (not out_id or m.out_id == out_id)
        ]
        return {"total": len(found), "messages": [m.public() for m in found[offset : offset + limit]]}

    @app.get("/_sandbox/stats")
    async def stats() -> dict[str, Any]:
        return {
            "messages": len(st.messages),
            "pending_callbacks": len(st.pushes),
            "counters": dict(st.counters),
        }

    @app.get("/_sandbox/reports/aliyun")
    async def aliyun_reports(limit: int = 10_000) -> list[dict[str, Any]]:
        """SmsReport items the vendor would push for the Aliyun-shaped messages received so far."""
        out = []
        for m in st.messages:
            if m.route != "aliyun":
                continue
            code, _ = aliyun_status(m)
            if code == 1:
                continue
            out.append(aliyun_item(m, code == 3))
            if len(out) >= limit:
                break
        return out

    @app.get("/_sandbox/reports/twilio")
    async def twilio_reports(limit: int = 10_000) -> list[dict[str, str]]:
        """Status-callback forms Twilio would post (to each message's StatusCallback) so far."""
        out = []
        for m in st.messages:
            if m.route != "twilio":
                continue
            out.append(twilio_form(m, *m.status(st.now(), st.delivery)))
            if len(out) >= limit:
                break
        return out

    # -- callbacks pushed ----------------------------------------------------------------------

    def twilio_form(m: SandboxMessage, status: str, error: str | None) -> dict[str, str]:
        form = {
            "AccountSid": creds.account_sid,
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

    def aliyun_item(m: SandboxMessage, success: bool) -> dict[str, Any]:
        return {
            "phone_number": to_aliyun(m.to),
            "send_time": _china(m.created_at),
            "report_time": _china(st.now()),
            "success": success,
            "err_code": "DELIVERED" if success else "MOBILE_NOT_ON_SERVICE",
            "err_msg": "成功" if success else "用户停机",
            "biz_id": m.biz_id,
            "out_id": m.out_id or "",
        }

    def attempt(route: str, url: str, ids: list[str], **fields: Any) -> dict[str, Any]:
        """A new entry in the callback log (`GET /_sandbox/callbacks`)."""
        entry = {
            "route": route,
            "url": url,
            "at": st.now().isoformat(),
            "message_ids": ids,
            "status_code": None,
            "outcome": "pending",
            **fields,
        }
        st.callbacks.append(entry)
        return entry

    async def post(
        client: httpx.AsyncClient, entry: dict[str, Any], url: str, body: bytes, headers: dict[str, str]
    ) -> httpx.Response | None:
        entry["headers"], entry["body"] = headers, body.decode()
        try:
            answer = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as e:
            entry["outcome"], entry["error"] = "failed", type(e).__name__
            return None
        entry["status_code"] = answer.status_code
        return answer

    def done(entry: dict[str, Any], outcome: str) -> None:
        if entry["outcome"] == "pending":
            entry["outcome"] = outcome
        st.count(f"callbacks.{entry['route']}.{entry['outcome']}")

    async def twilio_push(m: SandboxMessage, delay: float) -> None:
        """`sent` at once, the final status after `delay` seconds: one POST each, as Twilio does."""
        async with httpx.AsyncClient(timeout=CALLBACK_TIMEOUT) as client:
            await twilio_callback(client, m, "sent", None)
            await asyncio.sleep(delay)
            final, error = ("undelivered", "30003") if m.undeliverable else ("delivered", None)
            await twilio_callback(client, m, final, error)

    async def twilio_callback(
        client: httpx.AsyncClient, m: SandboxMessage, status: str, error: str | None
    ) -> None:
        url = m.status_callback or ""
        fault = st.take_callback_fault("twilio")
        if fault == "drop":
            done(attempt("twilio", url, [m.id], status=status), "dropped")
            return
        form = twilio_form(m, status, error)
        for copy in range(2 if fault == "duplicate" else 1):
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": "TwilioProxy/1.1",
                "X-Twilio-Signature": twilio_signature(creds.auth_token, url, form.items()),
            }
            entry = attempt("twilio", url, [m.id], status=status, copy=copy + 1)
            answer = await post(client, entry, url, urlencode(form).encode(), headers)
            done(entry, "delivered" if answer is not None and answer.is_success else "failed")

    async def aliyun_push(messages: list[SandboxMessage], delay: float, target: CallbackTarget) -> None:
        """One SmsReport array for the messages of one send, pushed again until acknowledged."""
        await asyncio.sleep(delay)
        url = target.aliyun_url or ""
        ids = [m.id for m in messages]
        fault = st.take_callback_fault("aliyun")
        if fault == "drop":
            done(attempt("aliyun", url, ids), "dropped")
            return
        items = [aliyun_item(m, not m.undeliverable) for m in messages]
        body = json.dumps(items, ensure_ascii=False).encode()
        async with httpx.AsyncClient(timeout=CALLBACK_TIMEOUT) as client:
            for copy in range(2 if fault == "duplicate" else 1):
                for n, wait in enumerate((0.0, *target.retry_delays)):
                    await asyncio.sleep(wait)
                    headers = {"Content-Type": "application/json"}
                    if target.secret:
                        headers[SIGNATURE_HEADER] = signature_header(target.secret, int(time.time()), body)
                    entry = attempt("aliyun", url, ids, attempt=n + 1, copy=copy + 1)
                    answer = await post(client, entry, url, body, headers)
                    acknowledged = answer is not None and answer.is_success and _acknowledged(answer)
                    done(entry, "delivered" if acknowledged else "failed")
                    if acknowledged:
                        break
                else:
                    entry["gave_up"] = True
                    st.count("callbacks.aliyun.gave_up")

    @app.post("/_sandbox/callbacks")
    async def register_callbacks(registration: CallbackRegistration) -> dict[str, Any]:
        """Where Aliyun-shaped reports go from now on (sends already made keep their target)."""
        st.callback_target = CallbackTarget(
            registration.aliyun_url, registration.secret, tuple(registration.retry_delays)
        )
        return callback_target()

    def callback_target() -> dict[str, Any]:
        t = st.callback_target
        return {"aliyun_url": t.aliyun_url, "signed": bool(t.secret), "retry_delays": list(t.retry_delays)}

    @app.get("/_sandbox/callbacks")
    async def callbacks(route: str | None = None, message_id: str | None = None) -> dict[str, Any]:
        """Every push attempt so far (dropped ones too), and how many pushes are still to come."""
        found = [
            c
            for c in st.callbacks
            if (not route or c["route"] == route) and (not message_id or message_id in c["message_ids"])
        ]
        return {"callbacks": found, "pending": len(st.pushes), **callback_target()}

    return app


def main(argv: list[str] | None = None) -> None:
    """`python -m integrations.sms.sandbox_server --port N`: serve until interrupted."""
    serve(
        argv,
        prog="python -m integrations.sms.sandbox_server",
        description=__doc__.split("\n")[0],
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
