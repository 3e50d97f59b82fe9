"""The investigation report draft (services/audit/report.py): pure rendering."""

from __future__ import annotations

from datetime import timedelta

from services.audit.report import Anchor, ProofRow, build_view, render
from tests.unit.test_audit_findings import INCIDENT, RULES, SFS, T0, Log


def view_of(log: Log, anchor: Anchor | None = None):
    return build_view(str(INCIDENT), log.events, log.compute(), anchor, RULES.party_names or {}, T0)


def scripted() -> Log:
    log = Log()
    log.reported(discovered_minutes_before=200, summary="对象<script>失联</script>|未归")
    log.add("incident.action_recorded", 5, action="SEARCH_STARTED", party=SFS, note="已组织人员")
    log.add(
        "incident.status_changed",
        6,
        status="SEARCHING",
        previous_status="REPORTED",
        changed_at=(T0 + timedelta(minutes=6)).isoformat(),
    )
    return log


ANCHOR = Anchor(
    note="sqjz.wushen.example/audit\n3\nAAAA\n\n— sqjz.wushen.example/audit abc=\n",
    size=3,
    root_hash="AAAA",
    proofs=(
        ProofRow(0, "bGVhZg==", ("cDE=", "cDI="), True),
        ProofRow(1, "bGVhZjI=", ("cDM=",), True),
        ProofRow(2, "bGVhZjM=", (), True),
    ),
)


def test_markdown_has_every_section_the_plan_asks_for() -> None:
    text = render(view_of(scripted(), ANCHOR), "markdown")
    for heading in (
        "一、事件概况",
        "二、处置经过",
        "三、责任调查",
        "四、经验总结",
        "五、整改意见建议",
    ):
        assert f"## {heading}" in text
    assert text.count("（待填写）") >= 3
    assert "| 事件种类 | 脱离监督管理（ABSCONDED） |" in text
    assert "2025-03-01 10:05:00" in text  # Asia/Shanghai
    assert (
        "| 图克镇司法所（SFS:150626102） | 记录处置：组织查找（SEARCH_STARTED），已组织人员 | 1 |"
        in text
    )
    assert "### 1. 疑似瞒报，供核查（R12）— 图克镇司法所（SFS:150626102）" in text
    assert "证据：日志序号 0（包含证明见附录）" in text
    assert "```\nsqjz.wushen.example/audit\n3\nAAAA\n\n— " in text
    assert "| 0 | `bGVhZg==` | `cDE=`<br>`cDI=` |" in text
    assert "失联</script>\\|未归" in text  # a pipe cannot break the table


def test_html_escapes_what_people_typed() -> None:
    html = render(view_of(scripted(), ANCHOR), "html")
    assert html.startswith("<!DOCTYPE html>")
    assert "<script>失联" not in html and "&lt;script&gt;失联" in html
    assert "<h2>三、责任调查</h2>" in html and "疑似瞒报，供核查" in html


def test_without_findings_or_checkpoint_the_report_says_so() -> None:
    log = Log()
    log.reported()
    text = render(view_of(log), "markdown")
    assert "未发现疑似迟报、谎报、瞒报、漏报情形。" in text
    assert "日志尚无签名检查点。" in text


def test_timeline_follows_event_time_and_names_the_system_for_its_own_events() -> None:
    view = view_of(scripted())
    assert [row.index for row in view.timeline] == [0, 1, 2]
    assert view.timeline[2].party == "系统"
    assert view.timeline[2].what == "状态：已报告 → 查找中"
    assert view.generated_at == "2025-03-01 10:00:00"
