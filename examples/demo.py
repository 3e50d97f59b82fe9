"""Post the sample incidents to a running system and show what escalation made of them.

Run with `make run` going in another terminal: `python -m examples.demo`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from shared.auth import ensure_dev_keys, mint
from shared.settings import Settings

INCIDENTS_DIR = Path(__file__).parent / "incidents"
INTAKE_URL = os.environ.get("INTAKE_URL", "http://127.0.0.1:8001")
ESCALATION_URL = os.environ.get("ESCALATION_URL", "http://127.0.0.1:8002")
NOTIFICATION_URL = os.environ.get("NOTIFICATION_URL", "http://127.0.0.1:8003")
# Events travel intake -> Kafka -> escalation -> notification; give them a moment to arrive.
SETTLE_SECONDS = 2.0
# A system just started may still be joining its consumer groups when the reports arrive.
ESCALATION_WAIT_SECONDS = 60.0


class ServiceUnreachable(Exception):
    pass


class LocalToken(httpx.Auth):
    """Signs each request with the local development key of `make run`: a report as its
    reporter, everything else as the banner office (BLO)."""

    requires_request_body = True

    def __init__(self) -> None:
        self._settings = Settings()
        private_key, _ = ensure_dev_keys(self._settings.local_data_dir / "auth")
        self._key = private_key.read_bytes()

    def auth_flow(self, request: httpx.Request):
        party = "BLO"
        if request.method == "POST" and request.content:
            party = json.loads(request.content).get("reporter", {}).get("party", party)
        token = mint(
            self._key,
            party,
            issuer=self._settings.auth_issuer,
            audience=self._settings.auth_audience,
        )
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


def request(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return client.request(method, url, **kwargs)
    except httpx.TransportError as error:
        raise ServiceUnreachable(f"{url}: {error}") from error


def print_problem(response: httpx.Response) -> None:
    try:
        print(json.dumps(response.json(), ensure_ascii=False, indent=2))
    except ValueError:
        print(response.text)


def incident_body(path: Path, now: datetime) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    # Relative to now so that deadlines in the obligations are minutes away, not long overdue.
    body["occurred_at"] = (now - timedelta(minutes=5)).isoformat()
    body["discovered_at"] = (now - timedelta(minutes=2)).isoformat()
    return body


def post_incidents(client: httpx.Client) -> list[str]:
    now = datetime.now(UTC)
    incident_ids: list[str] = []
    for path in sorted(INCIDENTS_DIR.glob("*.json")):
        # One key per sample and run: each run reports afresh, a retried POST does not.
        key = f"demo-{path.stem}-{now:%Y%m%dT%H%M%S}"
        response = request(
            client,
            "POST",
            f"{INTAKE_URL}/v1/incidents",
            json=incident_body(path, now),
            headers={"Idempotency-Key": key},
        )
        if response.is_success:
            incident_id = response.json()["id"]
            location = response.headers.get("Location", "")
            print(f"{path.name}: {response.status_code} {incident_id} {location}")
            incident_ids.append(incident_id)
            continue
        print(f"{path.name}: {response.status_code}")
        print_problem(response)
        # A 409 means this key was already used with another body; its incident is still
        # worth showing.
        if response.status_code == 409 and "incident_id" in response.json():
            incident_ids.append(response.json()["incident_id"])
    return incident_ids


def wait_until_escalated(client: httpx.Client, incident_ids: list[str]) -> None:
    """Until escalation knows every incident reported (at most `ESCALATION_WAIT_SECONDS`),
    then `SETTLE_SECONDS` more for the alerts to go out."""
    deadline = time.monotonic() + ESCALATION_WAIT_SECONDS
    waiting = list(incident_ids)
    while waiting and time.monotonic() < deadline:
        waiting = [
            incident_id
            for incident_id in waiting
            if request(
                client, "GET", f"{ESCALATION_URL}/v1/incidents/{incident_id}/obligations"
            ).status_code
            == 404
        ]
        if waiting:
            time.sleep(0.25)
    time.sleep(SETTLE_SECONDS)


def show_outcome(client: httpx.Client, incident_id: str) -> None:
    print(f"\nincident {incident_id}")
    response = request(client, "GET", f"{ESCALATION_URL}/v1/incidents/{incident_id}/obligations")
    if response.is_success:
        for obligation in response.json()["obligations"]:
            print(
                f"  {obligation['rule_id']}  {obligation['party_name']}  "
                f"{obligation['action_text']}  due {obligation['due_at']}"
            )
    else:
        print_problem(response)
    response = request(
        client, "GET", f"{NOTIFICATION_URL}/v1/notifications", params={"incident_id": incident_id}
    )
    if response.is_success:
        statuses = [item["status"] for item in response.json()["items"]]
        print(f"  {len(statuses)} notifications: {', '.join(statuses) or '-'}")
    else:
        print_problem(response)


def main() -> int:
    try:
        with httpx.Client(timeout=10.0, auth=LocalToken()) as client:
            incident_ids = post_incidents(client)
            if incident_ids:
                wait_until_escalated(client, incident_ids)
            for incident_id in incident_ids:
                show_outcome(client, incident_id)
    except ServiceUnreachable as error:
        print(f"Cannot reach {error}", file=sys.stderr)
        print("Start the system with `make run` first, then run the demo again.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
