"""deploy/aws: the IAM policy and the CloudFormation role parse, say the same thing, and keep
the least-privilege rules (tag conditions, external id); cfn-lint accepts the template."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "aws"
TEMPLATE = DEPLOY / "snapfim-reader-role.yaml"


def template() -> dict[str, Any]:
    return dict(yaml.safe_load(TEMPLATE.read_text()))


def test_the_policy_and_the_template_grant_the_same_permissions() -> None:
    policy = json.loads((DEPLOY / "snapfim-reader-policy.json").read_text())
    role = template()["Resources"]["ReaderRole"]["Properties"]
    [inline] = role["Policies"]
    assert inline["PolicyDocument"] == policy


def test_every_write_and_every_block_read_is_limited_to_snapfim_snapshots() -> None:
    policy = json.loads((DEPLOY / "snapfim-reader-policy.json").read_text())
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    assert by_sid["ReadOwnSnapshotBlocks"]["Condition"] == {
        "Null": {"aws:ResourceTag/snapfim:scan": "false"}}
    # deletes and creates also need the account tag naming the role's own account
    assert by_sid["DeleteOwnSnapshots"]["Condition"] == {
        "Null": {"aws:ResourceTag/snapfim:scan": "false"},
        "StringEquals": {"aws:ResourceTag/snapfim:account": "${aws:PrincipalAccount}"}}
    assert by_sid["CreateOnlyTaggedSnapshots"]["Condition"] == {
        "Null": {"aws:RequestTag/snapfim:scan": "false"},
        "StringEquals": {"aws:RequestTag/snapfim:account": "${aws:PrincipalAccount}"}}
    assert by_sid["TagOnCreateOnly"]["Condition"] == {
        "StringEquals": {"ec2:CreateAction": "CreateSnapshots"}}
    unrestricted = {a for s in policy["Statement"] if s["Resource"] == "*"
                    for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert unrestricted == {"ec2:DescribeRegions", "ec2:DescribeInstances",
                            "ec2:DescribeVolumes", "ec2:DescribeSnapshots"}
    actions = {a for s in policy["Statement"]
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert not any(a.startswith(("ec2:Attach", "ec2:CreateVolume", "ebs:Put", "ebs:Start"))
                   or a.endswith("*") for a in actions)


def test_the_role_trusts_the_scanner_account_only_with_the_external_id() -> None:
    role = template()["Resources"]["ReaderRole"]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": {"Fn::Sub": "arn:aws:iam::${ScannerAccountId}:root"}}
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}
    kms = template()["Resources"]["KmsPolicy"]
    assert kms["Condition"] == "HasKmsKeys"


def test_cfn_lint_accepts_the_template() -> None:
    cfn_lint = shutil.which("cfn-lint")
    assert cfn_lint is not None, "cfn-lint is a test dependency (pyproject test extras)"
    proc = subprocess.run([cfn_lint, str(TEMPLATE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
