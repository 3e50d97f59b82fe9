"""Alert texts in zh-CN; pure. Least personal data: no ID numbers, no offence details."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from shared.domain import CATEGORY_NAMES_ZH, PHASE_NAMES_ZH
from shared.events.models import ObligationCreated
from shared.privacy import mask_id_numbers_in_text

LOCAL_TIME = ZoneInfo("Asia/Shanghai")


def local_time(moment: datetime | None) -> str:
    if moment is None:
        return "不详"
    return moment.astimezone(LOCAL_TIME).strftime("%Y-%m-%d %H:%M")


def masked_name(name: str) -> str:
    """张三丰 → 张**: enough for the recipient to ask for the record, no more."""
    return name[:1] + "*" * max(len(name) - 1, 1)


def render_alert(
    notification_id: str, obligation: ObligationCreated, party_name: str
) -> dict[str, Any]:
    incident = obligation.incident
    drill = "【演练】" if incident.drill else ""
    title = (
        f"{drill}【社区矫正突发事件】{incident.township_name} "
        f"{CATEGORY_NAMES_ZH[incident.category]}（{PHASE_NAMES_ZH[incident.phase]}）"
    )
    subjects = "、".join(masked_name(name) for name in incident.subject_names) or "不详"
    text = "\n".join(
        [
            title,
            f"致：{party_name}",
            f"事项：{obligation.action_text}",
            f"时限：{local_time(obligation.due_at)} 前（{obligation.deadline_name}）",
            f"依据：{obligation.rule_id}，预案{obligation.plan_section}",
            f"时间：{local_time(incident.occurred_at)}",
            f"地点：{mask_id_numbers_in_text(incident.location or '不详')}",
            f"涉及对象：{subjects}",
            f"事态：{mask_id_numbers_in_text(incident.summary or '不详')}",
            f"事件编号：{obligation.incident_id}",
        ]
    )
    return {
        "notification_id": notification_id,
        "incident_id": str(obligation.incident_id),
        "obligation_id": str(obligation.obligation_id),
        "party": obligation.party,
        "party_name": party_name,
        "rule_id": obligation.rule_id,
        "plan_section": obligation.plan_section,
        "action": obligation.action,
        "due_at": obligation.due_at.isoformat(),
        "drill": incident.drill,
        "title": title,
        "text": text,
    }
