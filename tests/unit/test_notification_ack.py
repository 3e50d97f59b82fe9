"""Acknowledgement tokens (services/notification/ack.py): signed, expiring, bound to one alert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notification.ack import AckSigner, AckTokenError

NOW = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
ALERT = UUID("8a6f0c2e-1111-4000-8000-000000000001")
SIGNER = AckSigner(b"k" * 32, 600, "https://sqjz.example/")


def test_link_carries_a_token_that_verifies_for_its_alert_and_contact():
    link = SIGNER.link(ALERT, 2, NOW)
    prefix = f"https://sqjz.example/v1/notifications/{ALERT}/ack?token="
    assert link.startswith(prefix)
    claim = SIGNER.verify(ALERT, link.removeprefix(prefix), NOW + timedelta(seconds=599))
    assert claim.contact_index == 2
    assert claim.expires_at == NOW + timedelta(seconds=600)


def test_token_is_short_enough_for_an_sms():
    assert len(SIGNER.token(ALERT, 0, NOW)) < 70


def test_expired_token_is_refused_as_expired():
    token = SIGNER.token(ALERT, 0, NOW)
    with pytest.raises(AckTokenError) as refused:
        SIGNER.verify(ALERT, token, NOW)
    assert refused.value.expired


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: AckSigner(b"x" * 32, 600, "").token(ALERT, 0, NOW + timedelta(hours=1)),
        lambda t: t.replace("1.0.", "1.1.", 1),  # another contact
        lambda t: t.rsplit(".", 2)[0] + f".{int(NOW.timestamp()) + 99999}." + t.rsplit(".", 1)[1],
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: "2" + t[1:],
        lambda t: "",
        lambda t: "1.0.x.y",
        lambda t: t[:-2] + "签名",  # a non-ASCII signature was a TypeError: a 500
        lambda t: t.rsplit(".", 1)[0] + ".é",
    ],
)
def test_forged_or_altered_tokens_are_refused_as_invalid(forge):
    token = SIGNER.token(ALERT, 0, NOW + timedelta(hours=1))
    with pytest.raises(AckTokenError) as refused:
        SIGNER.verify(ALERT, forge(token), NOW)
    assert not refused.value.expired


def test_token_of_one_alert_does_not_acknowledge_another():
    token = SIGNER.token(ALERT, 0, NOW + timedelta(hours=1))
    with pytest.raises(AckTokenError):
        SIGNER.verify(uuid4(), token, NOW)


def test_forged_token_is_invalid_even_when_its_expiry_has_passed():
    forged = AckSigner(b"x" * 32, 600, "").token(ALERT, 0, NOW - timedelta(hours=1))
    with pytest.raises(AckTokenError) as refused:
        SIGNER.verify(ALERT, forged, NOW)
    assert not refused.value.expired


@given(st.integers(min_value=0, max_value=50), st.text(min_size=1, max_size=80))
def test_any_other_text_than_the_issued_token_is_refused(index, other):
    token = SIGNER.token(ALERT, index, NOW + timedelta(hours=1))
    assert SIGNER.verify(ALERT, token, NOW).contact_index == index
    if other.strip() != token:
        with pytest.raises(AckTokenError):
            SIGNER.verify(ALERT, other, NOW)
