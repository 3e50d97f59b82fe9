"""Pure helpers of the notification dispatcher (services/notification/dispatch.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.notification import dispatch
from services.notification.dispatch import DRILL_CONTACT, contacts_for, retry_delay
from shared.domain.directory import Contact, Directory

from .test_directory import directory_dict


@pytest.fixture(scope="module")
def webhook_directory() -> Directory:
    """The real directory with real-looking contacts for 图克镇's police station and the BLO."""
    data = directory_dict()
    for party in data["parties"]:
        if party["code"] == "PPS:150626102":
            party["contacts"] = [
                {"channel": "webhook", "address": "https://pps.example/hook"},
                {"channel": "file"},
            ]
        if party["code"] == "BLO":
            party["contacts"] = [{"channel": "webhook", "address": "https://blo.example/hook"}]
    return Directory.model_validate(data)


def test_drill_alert_to_police_goes_only_to_the_file_channel(webhook_directory):
    """R16: drills run through the same pipeline but never reach real police."""
    contacts = contacts_for(webhook_directory, "PPS:150626102", drill=True)
    assert contacts == (DRILL_CONTACT,)
    assert contacts[0].channel == "file"
    assert contacts[0].address is None
    assert contacts[0].label == "演练"


def test_real_alert_to_police_uses_the_directory_contacts(webhook_directory):
    assert contacts_for(webhook_directory, "PPS:150626102", drill=False) == (
        Contact(channel="webhook", address="https://pps.example/hook"),
        Contact(channel="file"),
    )


@pytest.mark.parametrize("party", ["BLO", "SFS:150626102", "TCG:150626102"])
def test_drill_alert_to_other_parties_without_drill_contacts_goes_to_the_file(
    webhook_directory, party
):
    """R16: a drill reaches no real contact of any party; without drill contacts, the file."""
    assert webhook_directory.party(party).contacts
    assert contacts_for(webhook_directory, party, drill=True) == (DRILL_CONTACT,)


def test_drill_alert_goes_to_the_drill_contacts_when_the_party_has_them():
    data = directory_dict()
    drill_hook = {"channel": "webhook", "address": "https://drill.example/hook"}
    for party in data["parties"]:
        if party["code"] in ("BLO", "PPS:150626102"):
            party["contacts"] = [{"channel": "webhook", "address": "https://real.example/hook"}]
            party["drill_contacts"] = [drill_hook]
    directory = Directory.model_validate(data)
    for party in ("BLO", "PPS:150626102"):
        assert contacts_for(directory, party, drill=True) == (Contact(**drill_hook),)
        assert contacts_for(directory, party, drill=False) == directory.party(party).contacts


def test_unknown_party_has_no_contacts(webhook_directory):
    assert contacts_for(webhook_directory, "DEPT:应急管理局", drill=False) == ()
    assert contacts_for(webhook_directory, "PPS:150626999", drill=True) == (DRILL_CONTACT,)


@pytest.mark.parametrize("round_number", [0, 1, 2, 5, 8, 9, 20])
@pytest.mark.parametrize("draw", [0.0, 0.5, 0.999999])
def test_retry_delay_is_jittered_backoff_within_bounds(monkeypatch, round_number, draw):
    monkeypatch.setattr(dispatch.random, "random", lambda: draw)
    base = min(2.0**round_number, 300.0)
    delay = retry_delay(round_number)
    assert timedelta(seconds=0.5 * base) <= delay < timedelta(seconds=1.5 * base)
    assert delay == timedelta(seconds=base * (0.5 + draw))


def test_retry_delay_grows_then_is_capped():
    for round_number in range(1, 30):
        delay = retry_delay(round_number)
        assert timedelta(seconds=0.5) <= delay < timedelta(seconds=450)
    assert retry_delay(30) >= timedelta(seconds=150)
