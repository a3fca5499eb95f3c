"""A client of Aliyun's SMS API (dysmsapi 2017-05-25), and of any gateway or sandbox that speaks it.

Wire format: RPC-style, every parameter form-encoded in a POST to `/`, signed with HMAC-SHA1 over
the canonical query. `SendBatchSms` carries up to 100 numbers per request, which is what makes a
daily cycle of ~100,000 messages take seconds rather than minutes; it takes one template per
request, so a batch is grouped by template and cut into chunks of distinct numbers.

Identity: the vendor gives one `BizId` per request and echoes one `OutId` (ours) per request in
its status queries and delivery reports, but no per-number id. So a message's provider id is
`"{OutId}:{tag of the number}"`, which the send result, a status query and a delivery report all
yield alike. The vendor does not deduplicate, and its records lag the send (providers.md: "after
a timeout, reconcile by delivery reports (`OutId`) before resending"): after an unknown outcome
(timeout, 5xx) the client queries by number and `OutId` (`QuerySendDetails`) and keeps what it
finds; what it does not find stays unknown, never resent at once. The outbox keeps those rows in
doubt, and its next try looks them up again (by our reference, `status`) before any resend.

Callbacks: the vendor pushes delivery reports (SmsReport) and replies (SmsUp) as JSON arrays,
unsigned. What authenticates them is a secret token in the callback URL's query string
(`…/sms/aliyun/status?token=…`, the `callback_token` setting), compared in constant time. The
acknowledgement is `{"code": 0, "msg": "成功"}`; the vendor counts any HTTP 200 as received and
pushes again only after a non-2xx answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from integrations._http import retry_after
from integrations._masking import scrub
from integrations.callbacks import CallbackAnswer, UnreadableItem, query_param, token_matches
from integrations.errors import (
    ConfigError,
    Duplicate,
    InvalidAddress,
    InvalidCallback,
    Permanent,
    ProviderError,
    RecipientThrottled,
    Transient,
    UnknownOutcome,
    UnverifiedCallback,
)
from integrations.metadata import ProviderInfo
from integrations.retries import call_with_retries
from integrations.sms._base import HttpProviderSettings, HttpSmsProvider, for_request
from integrations.sms._phones import from_aliyun, is_e164, phone_tag, to_aliyun
from integrations.sms._signing import aliyun_signed_form
from integrations.sms.protocol import (
    Callback,
    DeliveryReport,
    InboundMessage,
    SmsRequest,
    SmsResult,
    SmsStatus,
)

log = logging.getLogger(__name__)  # counts and keys only: never a number, a text or a secret

__all__ = ["CHINA", "AliyunSettings", "AliyunSmsProvider", "error_from_code"]

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")  # the vendor's dates and times are Beijing time
_API_VERSION = "2017-05-25"

# Codes that name one number of a batch: the batch is split to find it, the others still go out
_PER_NUMBER = {"isv.MOBILE_NUMBER_ILLEGAL", "isv.BUSINESS_LIMIT_CONTROL"}
_INVALID_ADDRESS = {"isv.MOBILE_NUMBER_ILLEGAL", "isv.MOBILE_COUNT_OVER_LIMIT"}
_CONFIG = {
    "InvalidAccessKeyId.NotFound",
    "InvalidAccessKeyId.Inactive",
    "SignatureDoesNotMatch",
    "Forbidden.RAM",
    "isp.RAM_PERMISSION_DENY",
    "isv.SMS_SIGNATURE_ILLEGAL",
    "isv.SIGN_NAME_ILLEGAL",
    "isv.ACCOUNT_NOT_EXISTS",
    "isv.ACCOUNT_ABNORMAL",
    "isv.OUT_OF_SERVICE",
    "isv.AMOUNT_NOT_ENOUGH",
    "isv.DENY_IP_RANGE",
    "MissingAccessKeyId",
    "IncompleteSignature",
}
_TRANSIENT = {
    "isv.BUSINESS_LIMIT_CONTROL",
    "Throttling",
    "Throttling.User",
    "Throttling.Api",
    "ServiceUnavailable",
    "SignatureNonceUsed",
    "InvalidTimeStamp.Expired",
}
# Delivery receipt codes (SmsReport `err_code`, QuerySendDetails `ErrCode`) about our template,
# signature, content, account or sending rate, never the borrower's number (Aliyun's "短信回执错误码",
# https://help.aliyun.com/document_detail/101347.html): every number fails alike until a person
# changes the template or the signature, so none counts towards marking a number unreachable. Those
# about the number (MOBILE_NOT_ON_SERVICE 停机, MOBILE_ACCOUNT_ABNORMAL, MOBILE_TERMINAL_ERROR,
# INVALID_NUMBER…) still count. SP_UNKNOWN_ERROR (the carrier's unknown error) says nothing of the
# number, as Twilio's 30008 does not. Those saying the recipient refused us are opt-outs (below).
_SENDER_FAULT = frozenset(
    {
        # the content or the template: a carrier's keyword filter, an unsubscribe line missing, no
        # channel for this content, a template refused, mismatched or missing a parameter
        "CONTENT_KEYWORD",
        "CONTENT_ERROR",
        "NO_ROUTE",
        "isv.SMS_CONTENT_ILLEGAL",
        "isv.UNSUPPORTED_CONTENT",
        "isv.SMS_CONTENT_MISMATCH_TEMPLATE_TYPE",
        "isv.SMS_TEMPLATE_ILLEGAL",
        "isv.TEMPLATE_MISSING_PARAMETERS",
        "isv.TEMPLATE_PARAMS_ILLEGAL",
        "isv.BLACK_KEY_CONTROL_LIMIT",
        "isv.PARAM_LENGTH_LIMIT",
        "isv.PARAM_NOT_SUPPORT_URL",
        "isv.INVALID_PARAMETERS",
        "isv.INVALID_JSON_PARAM",
        "isv.DOMESTIC_NUMBER_NOT_SUPPORTED",
        # the signature (签名) or the sender's extension code
        "isv.SMS_SIGN_ILLEGAL",
        "isv.SMS_SIGNATURE_ILLEGAL",
        "isv.SIGN_NAME_ILLEGAL",
        "isv.SMS_SIGNATURE_SCENE_ILLEGAL",
        "isv.EXTEND_CODE_ERROR",
        "isv.ONE_CODE_MULTIPLE_SIGN",
        # the account, its limits and our sending rate (to the number too: it says nothing of it)
        "isv.DAY_LIMIT_CONTROL",
        "isv.MONTH_LIMIT_CONTROL",
        "isv.BUSINESS_LIMIT_CONTROL",
        "MOBILE_SEND_LIMIT",
        "isv.OUT_OF_SERVICE",
        "isv.AMOUNT_NOT_ENOUGH",
        "isv.ACCOUNT_ABNORMAL",
        "isv.ACCOUNT_NOT_EXISTS",
        "isv.PRODUCT_UN_SUBSCRIPT",
        "isv.PRODUCT_UNSUBSCRIBE",
        "isp.RAM_PERMISSION_DENY",
        "isv.DENY_IP_RANGE",
        # the vendor's or the carrier's own failure
        "isp.SYSTEM_ERROR",
        "SP_UNKNOWN_ERROR",
    }
)
# Delivery receipt codes saying the recipient refused our messages at the carrier, read as the
# STOP they are (compliance.md: an opt-out is honoured at once; providers.md: TD / 退订 unsubscribe
# at the carrier in China, and our own ledger must know it). Aliyun's 短信回执错误码 (document
# 101347): USER_REJECT "接收用户已退订此业务或产品未开通" (the recipient unsubscribed from this
# service, or has it not enabled), "建议将此类接收用户剔除出发送清单" (take such recipients off
# the send list); MOBILE_IN_BLACK "手机号在黑名单中，通常是用户已退订此签名或命中运营商平台黑名单
# 规则" (on a blacklist, usually because the user unsubscribed from this signature, or by the
# carrier's blacklist rules: a complaint). Either way the number works and its owner is not to be
# texted: a failure counted against it would skip-trace the borrower, towards third parties.
_OPTED_OUT = frozenset({"USER_REJECT", "MOBILE_IN_BLACK"})
# BUSINESS_LIMIT_CONTROL is per-number flow control (per minute, hour and day): retrying within
# seconds cannot help, so the caller gets it back with a hint and reschedules the message. It is
# `RecipientThrottled`: the vendor answered, about this number only, so it is no outage.
_FLOW_CONTROL_RETRY_AFTER = 60.0


class AliyunSettings(HttpProviderSettings):
    base_url: str = Field(default="https://dysmsapi.aliyuncs.com", description="API endpoint.")
    access_key_id: str = Field(min_length=1, description="AccessKey ID of a RAM user allowed to send SMS.")
    access_key_secret: SecretStr = Field(description="AccessKey secret: the request signing key.")
    sign_name: str = Field(min_length=1, description="Approved signature (签名) shown in every message.")
    region_id: str = Field(default="cn-hangzhou", description="Region of the endpoint.")
    batch_size: int = Field(default=100, ge=1, le=100, description="Numbers per SendBatchSms request.")
    concurrency: int = Field(default=4, ge=1, le=64, description="Requests in flight per batch.")
    callback_token: SecretStr | None = Field(
        default=None,
        description="Secret in the query string of the callback URLs given to Aliyun (`?token=…`): "
        "the vendor signs nothing, so this is what authenticates its reports and replies.",
    )


class _SplitBatch(Exception):
    """A per-number refusal of a multi-number request: split it, do not retry it as a whole."""

    def __init__(self, error: ProviderError) -> None:
        self.error = error


def error_from_code(
    code: str, message: str, http_status: int, retry_after: float | None = None
) -> ProviderError:
    """Translate a vendor `Code` (or a bare HTTP status) into our error tree."""
    if code in _CONFIG or http_status in (401, 403, 404):
        return ConfigError(message, code=code or f"http_{http_status}")
    if code in _INVALID_ADDRESS:
        return InvalidAddress(code, message)
    if code == "isv.BUSINESS_LIMIT_CONTROL":
        return RecipientThrottled(message, retry_after=retry_after or _FLOW_CONTROL_RETRY_AFTER, code=code)
    if code in _TRANSIENT or code.startswith("Throttling") or http_status in (429, 503):
        return Transient(message, retry_after=retry_after, code=code or f"http_{http_status}")
    if http_status >= 500 or code in ("isp.SYSTEM_ERROR", "isv.SYSTEM_ERROR", "InternalError"):
        return UnknownOutcome(message, code=code or f"http_{http_status}")
    return Permanent(code or f"http_{http_status}", message)


def _out_id_for(key: str) -> str:
    """A single message's OutId, derived from our key: a status search after a crash can find it."""
    return "k" + hashlib.sha256(key.encode()).hexdigest()[:31]


# Every OutId we send: "k" and 31 hex digits (one message), "b" and 31 (a batch). Aliyun pushes the
# reports of every message the account sends to one URL; one without such an OutId is another
# system's (a lender's passcodes, its marketing).
_OUR_OUT_ID = re.compile(r"[bk][0-9a-f]{31}")


def _provider_id(out_id: str, number: str) -> str:
    return f"{out_id}:{phone_tag(number)}"


def _china_time(value: object) -> datetime:
    """Aliyun's Beijing time ("2026-12-01 10:00:00") in UTC; now, when the item's time is missing or
    no such text (a mistyped push is stored all the same, not refused with a 500 it would repeat)."""
    if isinstance(value, str) and value:
        try:
            return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA).astimezone(UTC)
        except ValueError:
            pass
    return datetime.now(UTC)


_SEND_STATUS: dict[int, SmsStatus] = {1: "sent", 2: "undelivered", 3: "delivered"}


class AliyunSmsProvider(HttpSmsProvider):
    """Batches of up to 100 numbers per request (`SendBatchSms`), a few requests in flight."""

    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="aliyun",
        kind="sms",
        title="Aliyun-compatible SMS (dysmsapi)",
        settings=AliyunSettings,
        batch_size=100,
        deduplicates=False,
        setup_url="https://help.aliyun.com/zh/sms/developer-reference/api-dysmsapi-2017-05-25-sendbatchsms",
    )
    settings_model: ClassVar[type[HttpProviderSettings]] = AliyunSettings
    settings: AliyunSettings

    # -- the signed call -------------------------------------------------------------------

    def _call(self, action: str, params: Mapping[str, str], *, split: bool = False) -> dict[str, Any]:
        """One signed RPC call, retried on `Transient`; returns the JSON of a `Code: OK` answer."""

        def attempt() -> dict[str, Any]:
            s = self.settings
            query = {
                "AccessKeyId": s.access_key_id,
                "Action": action,
                "Format": "JSON",
                "RegionId": s.region_id,
                "SignatureMethod": "HMAC-SHA1",
                "SignatureNonce": uuid.uuid4().hex,  # fresh per attempt: the vendor refuses a reused nonce
                "SignatureVersion": "1.0",
                "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "Version": _API_VERSION,
                **params,
            }
            form = aliyun_signed_form(s.access_key_secret.get_secret_value(), "POST", query.items())
            response = self._request("POST", "/", form=form)
            try:
                payload = response.json()
                code = str(payload.get("Code", ""))
                message = str(payload.get("Message", ""))
            except (ValueError, AttributeError):
                if response.status_code < 300:  # executed, perhaps, but the answer is unreadable
                    raise UnknownOutcome(
                        f"sms.aliyun: unreadable answer to {action}", code="bad_answer"
                    ) from None
                payload, code, message = {}, "", response.reason_phrase
            if response.status_code == 200 and code == "OK":
                return payload
            error = error_from_code(code, scrub(message), response.status_code, retry_after(response))
            if split and code in _PER_NUMBER:
                raise _SplitBatch(error)
            raise error

        return call_with_retries(attempt, self.retry_policy)

    # -- sending ----------------------------------------------------------------------------

    def send(self, request: SmsRequest) -> SmsResult:
        outcome = self.send_batch([request])[0]
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    def send_batch(self, requests: Sequence[SmsRequest]) -> list[SmsResult | ProviderError]:
        outcomes: list[SmsResult | ProviderError | None] = [None] * len(requests)
        seen: set[str] = set()
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            if request.idempotency_key in seen:
                outcomes[i] = Duplicate(
                    "idempotency key repeated within one batch", idempotency_key=request.idempotency_key
                )
            elif not is_e164(request.to):
                outcomes[i] = InvalidAddress(
                    "local.not_e164",
                    "the number is not in E.164 form",
                    idempotency_key=request.idempotency_key,
                )
            else:
                seen.add(request.idempotency_key)
                groups.setdefault(request.template, []).append(i)
        chunks = [c for indices in groups.values() for c in self._chunks(requests, indices)]

        def run(chunk: list[int]) -> list[SmsResult | ProviderError]:
            return self._send_chunk([requests[i] for i in chunk])

        try:
            done = self._map_bounded(run, chunks, self.settings.concurrency)
        except ConfigError as e:
            for chunk, chunk_outcomes in zip(chunks, e.outcomes or [], strict=False):
                for i, outcome in zip(chunk, chunk_outcomes or [], strict=False):
                    outcomes[i] = outcome
            e.outcomes = list(outcomes)
            raise
        for chunk, chunk_outcomes in zip(chunks, done, strict=True):
            assert chunk_outcomes is not None
            for i, outcome in zip(chunk, chunk_outcomes, strict=True):
                outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    def _chunks(self, requests: Sequence[SmsRequest], indices: list[int]) -> list[list[int]]:
        """Chunks of at most `batch_size`, each number (tag) at most once per chunk: ids are per number."""
        size = self.settings.batch_size
        chunks: list[tuple[set[str], list[int]]] = []
        first_open = 0
        for i in indices:
            tag = phone_tag(requests[i].to)
            for tags, members in chunks[first_open:]:
                if len(members) < size and tag not in tags:
                    tags.add(tag)
                    members.append(i)
                    break
            else:
                chunks.append(({tag}, [i]))
            while first_open < len(chunks) and len(chunks[first_open][1]) >= size:
                first_open += 1
        return [members for _, members in chunks]

    def _send_chunk(self, chunk: list[SmsRequest]) -> list[SmsResult | ProviderError]:
        single = len(chunk) == 1
        out_id = _out_id_for(chunk[0].idempotency_key) if single else "b" + uuid.uuid4().hex[:31]
        s = self.settings
        if single:
            action = "SendSms"
            params = {
                "PhoneNumbers": to_aliyun(chunk[0].to),
                "SignName": s.sign_name,
                "TemplateCode": chunk[0].template,
                "TemplateParam": json.dumps(dict(chunk[0].params), ensure_ascii=False),
                "OutId": out_id,
            }
        else:
            action = "SendBatchSms"
            params = {
                "PhoneNumberJson": json.dumps([to_aliyun(r.to) for r in chunk]),
                "SignNameJson": json.dumps([s.sign_name] * len(chunk), ensure_ascii=False),
                "TemplateCode": chunk[0].template,
                "TemplateParamJson": json.dumps([dict(r.params) for r in chunk], ensure_ascii=False),
                "OutId": out_id,
            }
        try:
            self._call(action, params, split=not single)
        except _SplitBatch:
            half = len(chunk) // 2
            return self._send_chunk(chunk[:half]) + self._send_chunk(chunk[half:])
        except ConfigError:
            raise
        except UnknownOutcome as e:
            if not s.reconcile_unknown:
                return [for_request(e, r.idempotency_key) for r in chunk]
            return self._reconcile(chunk, out_id, e)
        except ProviderError as e:
            return [self._for(e, r) for r in chunk]
        accepted_at = datetime.now(UTC)
        return [
            SmsResult(r.idempotency_key, _provider_id(out_id, r.to), "queued", accepted_at) for r in chunk
        ]

    @staticmethod
    def _for(error: ProviderError, request: SmsRequest) -> ProviderError:
        mine = for_request(error, request.idempotency_key)
        mine.reason = scrub(mine.reason, request.to, to_aliyun(request.to))
        return mine

    def _reconcile(
        self, chunk: list[SmsRequest], out_id: str, unknown: UnknownOutcome
    ) -> list[SmsResult | ProviderError]:
        """After an unknown outcome: what the vendor has under `out_id` is sent; the rest stays
        unknown. Not found yet is no proof it was not sent (the vendor's records lag), and a resend
        would text the borrower twice."""
        outcomes: list[SmsResult | ProviderError] = []

        def ours(dto: Mapping[str, Any]) -> bool:
            return dto.get("OutId") == out_id

        for request in chunk:
            try:
                found = self._search(request, ours)
            except ProviderError as e:
                found = None
                reason = f"{unknown.reason}; the status lookup failed: {e.reason}"
            else:
                reason = f"{unknown.reason}; not found at the vendor yet: looked up again before any resend"
            outcomes.append(
                found
                if found is not None
                else UnknownOutcome(reason, code=unknown.code, idempotency_key=request.idempotency_key)
            )
        log.warning(
            "sms.aliyun: outcome unknown for a request of %d; %d found sent, the rest left to look up again",
            len(chunk),
            sum(isinstance(o, SmsResult) for o in outcomes),
        )
        return outcomes

    # -- looking up ---------------------------------------------------------------------------

    def status(self, request: SmsRequest, provider_id: str | None = None) -> SmsResult | None:
        if provider_id:
            out_id = provider_id.split(":", 1)[0]
            return self._search(request, lambda dto: dto.get("OutId") == out_id)
        derived = _out_id_for(request.idempotency_key)
        ref = request.params.get("ref", "")

        def same(dto: Mapping[str, Any]) -> bool:
            # By our own reference only, never by text: the OutId derived from our key (a single
            # send), or, from a batch (one OutId for all), the caller's `ref` parameter, a token
            # unique to the message, as a whole word of what was sent with the same template.
            if dto.get("OutId") == derived:
                return True
            words = re.findall(r"[0-9A-Za-z]+", str(dto.get("Content", "")))
            return len(ref) >= 16 and dto.get("TemplateCode") == request.template and ref in words

        return self._search(request, same)

    def _search(self, request: SmsRequest, match: Callable[[Mapping[str, Any]], bool]) -> SmsResult | None:
        """QuerySendDetails for the number, newest day first, up to `lookback_days`."""
        today = datetime.now(CHINA).date()
        for back in range(self.settings.lookback_days):
            day = (today - timedelta(days=back)).strftime("%Y%m%d")
            for page in range(1, 21):
                payload = self._call(
                    "QuerySendDetails",
                    {
                        "PhoneNumber": to_aliyun(request.to),
                        "SendDate": day,
                        "PageSize": "50",
                        "CurrentPage": str(page),
                    },
                )
                dtos = (payload.get("SmsSendDetailDTOs") or {}).get("SmsSendDetailDTO") or []
                for dto in dtos:
                    if match(dto):
                        return self._from_dto(request, dto)
                if len(dtos) < 50:
                    break
        return None

    @staticmethod
    def _from_dto(request: SmsRequest, dto: Mapping[str, Any]) -> SmsResult:
        status = _SEND_STATUS.get(int(dto.get("SendStatus", 1)), "sent")
        err = dto.get("ErrCode")
        error_code = str(err) if err and status != "delivered" else None
        return SmsResult(
            idempotency_key=request.idempotency_key,
            provider_id=_provider_id(str(dto.get("OutId", "")), request.to),
            status=status,
            accepted_at=_china_time(dto.get("SendDate")),
            error_code=error_code,
            recipient_opted_out=error_code in _OPTED_OUT,
            sender_fault=error_code in _SENDER_FAULT,
        )

    # -- health -------------------------------------------------------------------------------

    def check(self) -> str:
        """One signed `QuerySendDetails`: proves the endpoint, the AccessKey and its permission."""
        day = datetime.now(CHINA).strftime("%Y%m%d")
        self._call(
            "QuerySendDetails",
            {"PhoneNumber": "13800000000", "SendDate": day, "PageSize": "1", "CurrentPage": "1"},
        )
        return "signed QuerySendDetails accepted"

    # -- callbacks ----------------------------------------------------------------------------

    def check_callbacks(self) -> None:
        token = self.settings.callback_token
        if token is None or not token.get_secret_value():
            raise ConfigError(
                f"{self.info.entry_point}: callback_token is required to receive Aliyun's reports and "
                "replies (the vendor signs nothing; the token in the callback URL is what authenticates them)"
            )

    def parse_callback(
        self, headers: Mapping[str, str], body: bytes, *, url: str | None = None, event: str = "status"
    ) -> list[Callback]:
        """SmsReport (`status`) or SmsUp (`inbound`) arrays, once the URL's `token` matches."""
        expected = self.settings.callback_token.get_secret_value() if self.settings.callback_token else ""
        if not token_matches(expected, query_param(url, "token")):
            raise UnverifiedCallback("callback URL's token is missing or wrong", code="token.mismatch")
        try:
            items = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise InvalidCallback("callback is not JSON", code="body.malformed") from None
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise InvalidCallback("callback is not a JSON array of objects", code="body.malformed")
        readers: dict[str, Callable[[Mapping[str, Any]], Callback]] = {"status": _report, "inbound": _reply}
        read = readers.get(event)
        if read is None:
            raise InvalidCallback(f"no callback event {event[:20]!r}", code="event.unknown")
        return [_read_or_keep(read, item) for item in items]

    def acknowledge(self, event: str) -> CallbackAnswer:
        return CallbackAnswer(
            200, json.dumps({"code": 0, "msg": "成功"}, ensure_ascii=False).encode(), "application/json"
        )


def _read_or_keep(read: Callable[[Mapping[str, Any]], Callback], item: Mapping[str, Any]) -> Callback:
    """One item of a pushed array, or the item as it came with why it cannot be read: the rest of
    the array is stored all the same (`integrations.callbacks`)."""
    try:
        return read(item)
    except InvalidCallback as unreadable:
        return UnreadableItem(unreadable.reason, json.dumps(item, ensure_ascii=False, default=str))


_SUCCESS = {"true": True, "1": True, "false": False, "0": False}


def _success(item: Mapping[str, Any]) -> bool:
    """The item's `success`: a JSON boolean as Aliyun sends it, or its text or 0/1 from a gateway
    that passes it on as text. Anything else is no answer: read as a failure, it counted against a
    number that may well work, so the item is kept unread for operators instead."""
    value = item.get("success")
    said = _SUCCESS.get(str(value).strip().lower()) if isinstance(value, str | int) else None
    if said is None:
        raise InvalidCallback("delivery report item's success is not true or false", code="body.malformed")
    return said


def _report(item: Mapping[str, Any]) -> DeliveryReport:
    """One SmsReport item: `{phone_number, send_time, report_time, success, err_code, err_msg, sms_size,
    biz_id, out_id}`. Its times are Beijing time without an offset; `err_code` is `DELIVERED` on
    success, the carrier's code (`MOBILE_NOT_ON_SERVICE`…) otherwise, or one about our template,
    signature or account (`_SENDER_FAULT`), which is no failure of the number, or that the recipient
    refused us (`_OPTED_OUT`: recorded as a STOP)."""
    if "success" not in item or "out_id" not in item or item.get("phone_number") in (None, ""):
        raise InvalidCallback(
            "delivery report item lacks success, out_id or phone_number", code="body.malformed"
        )
    success = _success(item)
    out_id = str(item["out_id"])
    phone = str(item["phone_number"])
    err = item.get("err_code")
    error_code = None if success else (str(err) if err else None)
    return DeliveryReport(
        provider_id=_provider_id(out_id, phone),
        status="delivered" if success else "undelivered",
        at=_china_time(item.get("report_time")),
        error_code=error_code,
        reference=out_id,
        vendor_status=str(err) if err else ("DELIVERED" if success else None),
        foreign=_OUR_OUT_ID.fullmatch(out_id) is None,
        recipient_opted_out=error_code in _OPTED_OUT,
        sender_fault=error_code in _SENDER_FAULT,
        # No `recipient`: the opt-out is recorded for the number the message went to. Aliyun's
        # `phone_number` may be national, and a +1 number's 11 digits read as a mainland mobile's
        # (`_phones`): a STOP recorded for the wrong number would leave the right one texted. A
        # report before its send is kept with the flag and applied once the send is recorded.
    )


def _reply(item: Mapping[str, Any]) -> InboundMessage:
    """One SmsUp item: `{phone_number, send_time, content, sign_name, dest_code, sequence_id}`."""
    phone, content = item.get("phone_number"), item.get("content")
    if not phone or not isinstance(content, str):
        raise InvalidCallback("reply item lacks phone_number or content", code="body.malformed")
    sender = from_aliyun(str(phone))
    if not is_e164(sender):
        raise InvalidCallback("reply item's phone_number is not a number", code="body.malformed")
    sequence = item.get("sequence_id")
    if sequence not in (None, ""):
        message_id = f"seq:{sequence}"
    else:  # no id: the item itself, so that a push repeated with the same content is a repeat
        canonical = json.dumps(dict(item), sort_keys=True, ensure_ascii=False).encode()
        message_id = "sha256:" + hashlib.sha256(canonical).hexdigest()
    dest = item.get("dest_code")
    return InboundMessage(
        sender=sender,
        text=content,
        at=_china_time(item.get("send_time")),
        message_id=message_id,
        recipient=str(dest) if dest else None,
    )
