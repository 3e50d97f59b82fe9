"""The Aliyun V3 request signature (ACS3-HMAC-SHA256) against the vendor's published example.

The values are those of Alibaba Cloud's "V3 request syntax and signature method" worked example
(an RPC call of RunInstances with a fixed key, date and nonce): if any encoding, ordering or
joining rule of `acs3_sign` is wrong, these strings differ.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from services.notification.channels.gateways import acs3_headers, acs3_sign, canonical_query

EMPTY_BODY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SIGNED_HEADERS = (
    "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
)
EXAMPLE_QUERY = {
    "RegionId": "cn-shanghai",
    "ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
}
EXAMPLE_CANONICAL_REQUEST = (
    "POST\n"
    "/\n"
    "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\n"
    "host:ecs.cn-shanghai.aliyuncs.com\n"
    "x-acs-action:RunInstances\n"
    f"x-acs-content-sha256:{EMPTY_BODY_SHA256}\n"
    "x-acs-date:2023-10-26T10:22:32Z\n"
    "x-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\n"
    "x-acs-version:2014-05-26\n"
    "\n"
    f"{SIGNED_HEADERS}\n"
    f"{EMPTY_BODY_SHA256}"
)
EXAMPLE_STRING_TO_SIGN = (
    "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
)
EXAMPLE_SIGNATURE = "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"


def example_headers() -> dict[str, str]:
    return acs3_headers(
        "ecs.cn-shanghai.aliyuncs.com",
        "RunInstances",
        "2014-05-26",
        datetime(2023, 10, 26, 10, 22, 32, tzinfo=UTC),
        "3156853299f313e23d1673dc12e1703d",
    )


def test_the_vendors_example_signs_step_by_step_as_published() -> None:
    signed = acs3_sign(
        "POST", "/", EXAMPLE_QUERY, example_headers(), b"", "YourAccessKeyId", "YourAccessKeySecret"
    )
    assert signed.canonical_request == EXAMPLE_CANONICAL_REQUEST
    assert signed.string_to_sign == EXAMPLE_STRING_TO_SIGN
    assert signed.signature == EXAMPLE_SIGNATURE
    assert signed.authorization == (
        f"ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders={SIGNED_HEADERS},"
        f"Signature={EXAMPLE_SIGNATURE}"
    )


def test_headers_carry_the_body_hash_and_a_utc_date() -> None:
    headers = acs3_headers(
        "dysmsapi.aliyuncs.com",
        "SendSms",
        "2017-05-25",
        datetime.fromisoformat("2023-10-26T18:22:32+08:00"),
        "n-1",
        b'{"a":1}',
    )
    assert headers["x-acs-date"] == "2023-10-26T10:22:32Z"
    assert headers["x-acs-content-sha256"] == hashlib.sha256(b'{"a":1}').hexdigest()
    assert example_headers()["x-acs-content-sha256"] == EMPTY_BODY_SHA256


def test_names_and_values_are_percent_encoded_as_rfc_3986() -> None:
    """Space as %20 (not +), `*` as %2A, `~` kept, UTF-8 bytes of Chinese escaped."""
    assert (
        canonical_query({"b": "a b*~", "a": "乌审旗"})
        == "a=%E4%B9%8C%E5%AE%A1%E6%97%97&b=a%20b%2A~"
    )


def test_other_headers_are_not_signed_and_values_are_trimmed() -> None:
    headers = {**example_headers(), "User-Agent": "x", "x-acs-action": "  RunInstances "}
    signed = acs3_sign(
        "POST", "/", EXAMPLE_QUERY, headers, b"", "YourAccessKeyId", "YourAccessKeySecret"
    )
    assert signed.signature == EXAMPLE_SIGNATURE
    changed = acs3_sign(
        "POST",
        "/",
        {**EXAMPLE_QUERY, "RegionId": "cn-beijing"},
        example_headers(),
        b"",
        "YourAccessKeyId",
        "YourAccessKeySecret",
    )
    assert changed.signature != EXAMPLE_SIGNATURE
