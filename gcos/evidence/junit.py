"""``gcos report --format junit``: the report as JUnit XML, so a CI system shows refusals natively (issue 12
item 5). Built from the same view model as md and html, so it cannot disagree with them.

One ``testsuite`` per step; in it, one ``testcase`` for the rehearsal the report leads with (a failure unless it
passed) and one per gate of the step's latest recorded policy decision (commit or rollback), a gate that did
not hold being a ``failure`` whose message is the kernel's reason. A step with no recorded decision has one
``skipped`` case that says so. Every case names its ledger seq and trace in ``properties``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from gcos.evidence.common import shown

JUNIT_FILE = "junit.xml"


def junit_xml(context: Mapping[str, Any]) -> bytes:
    """The JUnit XML document of the report's steps (UTF-8, with a declaration, stable bytes)."""
    root = ET.Element("testsuites", name="gcos", timestamp=str(context["created_at"]))
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for step in context["steps"]:
        suite = _suite(step)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def _suite(step: Mapping[str, Any]) -> ET.Element:
    suite = ET.Element("testsuite", name=f"{step['id']} ({step['ref']}): {step['title']}")
    props = ET.SubElement(suite, "properties")
    for name, value in (("state", step["state"]["state"]), ("spec_hash", step["spec"]["hash"])):
        ET.SubElement(props, "property", name=name, value=shown(value))
    cases = [_rehearsal_case(step), *_gate_cases(step)]
    suite.extend(cases)
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    suite.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
    return suite


def _case(classname: str, name: str, seq: Any, trace: Any) -> ET.Element:
    case = ET.Element("testcase", classname=classname, name=name)
    props = ET.SubElement(case, "properties")
    ET.SubElement(props, "property", name="ledger_seq", value=shown(seq))
    ET.SubElement(props, "property", name="trace_id", value=shown(trace))
    return case


def _rehearsal_case(step: Mapping[str, Any]) -> ET.Element:
    r = step["rehearsal"]
    classname = f"gcos.{step['id']}"
    if r is None:
        case = _case(classname, "rehearsal", None, None)
        ET.SubElement(case, "skipped", message=f"no rehearsal of {step['id']} is recorded")
        return case
    case = _case(classname, f"rehearsal seq {r['seq']} ({r['role']})", r["seq"], r["trace_id"])
    if r["outcome"] != "passed":
        failure = ET.SubElement(case, "failure", message=f"rehearsal {shown(r['outcome'])}", type="rehearsal")
        failure.text = shown(r["message"])
    return case


def _gate_cases(step: Mapping[str, Any]) -> list[ET.Element]:
    decisions: Sequence[Mapping[str, Any]] = step["policy_decisions"]
    classname = f"gcos.{step['id']}"
    if not decisions:
        case = _case(classname, "gates", None, None)
        ET.SubElement(case, "skipped", message=f"no commit or rollback of {step['id']} was attempted")
        return [case]
    p = decisions[-1]
    cases = []
    for g in p["gates"]:
        name = f"{p['action']} gate {g.get('number')} {g.get('gate')}"
        case = _case(classname, name, p["seq"], p["trace_id"])
        if not g.get("allow"):
            failure = ET.SubElement(case, "failure", message=shown(g.get("reason")), type="gate refused")
            failure.text = f"{p['action']} refused at ledger seq {p['seq']}: {shown(p['refusal'])}"
        cases.append(case)
    return cases
