"""deploy/k8s rendered (base, dev, prod): valid objects that hold the platform's invariants."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from shared.events.topics import all_topics_with_dead_letters, dead_letter_topic
from shared.serve import GRACEFUL_STOP_SECONDS
from shared.settings import CONSOLE, SERVICE_NAMES, Settings
from tests.deploy.support import (
    DEPLOYED,
    DOCKERFILE,
    K8S,
    PART_OF,
    PORTS,
    REPOSITORY,
    SERVER_LABELS,
    VARIANTS,
    Resource,
    container_environment,
    ingress_backend,
    named,
    of_kind,
    parse_dockerfile,
    pod_labels,
    pod_spec,
    rendered,
    selects,
    walk_strings,
)

# The oldest Kubernetes the manifests are meant for; strict: unknown fields are errors.
KUBERNETES_VERSION = "1.30"
OVERLAYS = ("dev", "prod")
INGRESS_CONTROLLER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
}
PROMETHEUS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}
CONSOLE_PODS = {
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": CONSOLE, **SERVER_LABELS}}
}
SECRETS = {
    "jwt-keys",
    "pii-key",
    "audit-signing-key",
    "audit-key-encryption",
    "notification-secrets",
    "console-signing-key",
}
# The console's client secret at the county's identity provider: only prod logs in through it.
PROD_SECRETS = {"console-oidc"}
DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# A URL may be given plainly when it holds no password (URL_WITH_PASSWORD); a `…_FILE` names
# where a Secret is mounted, not the secret.
SECRET_NAMES = re.compile(r"^(?!.*_FILE$).*(PASSWORD|SECRET|TOKEN|KEY|CREDENTIAL)", re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


def deployment(resources: list[Resource], service: str) -> Resource:
    return named(resources, "Deployment", service)


def main_container(workload: Resource) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1
    return containers[0]


def environment(resources: list[Resource], workload: Resource) -> dict[str, Any]:
    return container_environment(resources, main_container(workload))


def dockerfile_uid() -> int:
    user = parse_dockerfile(DOCKERFILE).final.last("USER") or ""
    return int(user.split(":")[0])


def workloads(resources: list[Resource]) -> list[Resource]:
    return of_kind(resources, "Deployment") + of_kind(resources, "Job")


# --- schemas --------------------------------------------------------------------------------


def check_kafka_topic(topic: Resource) -> None:
    assert topic["apiVersion"] == "kafka.strimzi.io/v1beta2"
    assert DNS_1123_SUBDOMAIN.fullmatch(topic["metadata"]["name"])
    assert topic["metadata"]["labels"]["strimzi.io/cluster"]
    spec = topic["spec"]
    assert set(spec) <= {"topicName", "partitions", "replicas", "config"}
    assert isinstance(spec["partitions"], int) and spec["partitions"] >= 1
    assert isinstance(spec["replicas"], int) and 1 <= spec["replicas"] <= 32767
    assert all(isinstance(value, str | int | bool) for value in spec["config"].values())


def check_cnpg_cluster(cluster: Resource) -> None:
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert DNS_1123_SUBDOMAIN.fullmatch(cluster["metadata"]["name"])
    spec = cluster["spec"]
    known = {
        "instances",
        "imageName",
        "primaryUpdateStrategy",
        "enableSuperuserAccess",
        "bootstrap",
        "postgresql",
        "storage",
        "walStorage",
        "resources",
        "affinity",
        "monitoring",
        "backup",
        "managed",
    }
    assert set(spec) <= known, set(spec) - known
    assert isinstance(spec["instances"], int) and spec["instances"] >= 1
    assert re.fullmatch(r"\d+(Mi|Gi|Ti)", spec["storage"]["size"])
    assert set(spec["bootstrap"]) == {"initdb"}
    assert all(isinstance(v, str) for v in spec["postgresql"]["parameters"].values())


def check_kafka_user(user: Resource) -> None:
    assert user["apiVersion"] == "kafka.strimzi.io/v1beta2"
    assert DNS_1123_SUBDOMAIN.fullmatch(user["metadata"]["name"])
    assert user["metadata"]["labels"]["strimzi.io/cluster"]
    spec = user["spec"]
    assert spec["authentication"] == {"type": "scram-sha-512"}
    assert spec["authorization"]["type"] == "simple"
    for acl in spec["authorization"]["acls"]:
        assert set(acl) == {"resource", "operations"}
        assert acl["resource"]["type"] in ("topic", "group")
        assert acl["resource"]["patternType"] in ("literal", "prefix")
        assert set(acl["operations"]) <= {"Read", "Write", "Describe"}


CUSTOM_RESOURCES = {
    "KafkaTopic": check_kafka_topic,
    "Cluster": check_cnpg_cluster,
    "KafkaUser": check_kafka_user,
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_is_valid(variant: str) -> None:
    for resource in rendered(variant):
        name = f"{resource['kind']}/{resource['metadata']['name']}"
        if resource["kind"] in CUSTOM_RESOURCES:
            CUSTOM_RESOURCES[resource["kind"]](resource)
            continue
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            pytest.fail(f"{variant}: {name}: {where}: {error.message}")


def test_the_schema_check_rejects_a_misspelt_field() -> None:
    broken = deployment(rendered("base"), "intake")
    pod_spec(broken)["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("variant", OVERLAYS)
def test_overlays_put_every_object_in_their_namespace(variant: str) -> None:
    resources = rendered(variant)
    (namespace,) = of_kind(resources, "Namespace")
    for resource in resources:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == namespace["metadata"]["name"]


# --- deployments ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("service", DEPLOYED)
def test_deployment_runs_the_services_image_on_its_port(variant: str, service: str) -> None:
    resources = rendered(variant)
    workload = deployment(resources, service)
    container = main_container(workload)
    assert container["name"] == service
    # The one image; its launcher (ENTRYPOINT sqjz-serve) runs the service named in args.
    assert re.fullmatch(r"(.+/)?correction-emergency/services:[\w.-]+", container["image"])
    assert "command" not in container
    assert container["args"] == [service]
    assert container["ports"] == [
        {"name": "http", "containerPort": PORTS[service], "protocol": "TCP"}
    ]
    assert "replicas" not in workload["spec"], "the HorizontalPodAutoscaler owns the count"
    assert selects(workload["spec"]["selector"]["matchLabels"], pod_labels(workload))
    assert selects({"app.kubernetes.io/name": service, **SERVER_LABELS}, pod_labels(workload))
    assert selects(PART_OF, pod_labels(workload))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("service", DEPLOYED)
def test_probes_hit_healthz_and_readyz_on_the_services_port(variant: str, service: str) -> None:
    container = main_container(deployment(rendered(variant), service))
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    # /readyz waits up to 3 s for the broker's metadata.
    assert container["readinessProbe"]["timeoutSeconds"] > 3


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("service", DEPLOYED)
def test_pods_are_locked_down(variant: str, service: str) -> None:
    resources = rendered(variant)
    for workload in (deployment(resources, service), named(resources, "Job", f"{service}-migrate")):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == dockerfile_uid()
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        # Service links would set e.g. INTAKE_PORT=tcp://…, which the settings read as a port.
        assert spec["enableServiceLinks"] is False
        container = main_container(workload)
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, kind
        tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
        volume = next(v for v in spec["volumes"] if v["name"] == tmp["name"])
        assert "emptyDir" in volume


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("service", DEPLOYED)
def test_shutdown_and_spreading(variant: str, service: str) -> None:
    resources = rendered(variant)
    workload = deployment(resources, service)
    spec = pod_spec(workload)
    pre_stop = main_container(workload)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # SIGKILL comes only after the pre-stop pause, uvicorn's wait for in-flight requests, the
    # service's own shutdown (records in hand, outbox) and the flush of its spans (5 s).
    grace = float(environment(resources, workload)["SHUTDOWN_GRACE_SECONDS"])
    needed = int(pre_stop[1]) + GRACEFUL_STOP_SECONDS[service] + grace + 5
    assert spec["terminationGracePeriodSeconds"] >= needed
    constraints = spec["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in constraints} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    for constraint in constraints:
        assert (
            constraint["labelSelector"]["matchLabels"]
            == workload["spec"]["selector"]["matchLabels"]
        )


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("service", DEPLOYED)
def test_environment_is_valid_settings_without_migrations_at_start(
    variant: str, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = rendered(variant)
    variables = environment(resources, deployment(resources, service))
    assert variables["MIGRATE_ON_STARTUP"] == "false"
    assert variables["OTEL_SERVICE_NAME"] == service
    if variant == "prod":
        # The service's own login; its password comes apart, from the operator's Secret.
        assert variables["DATABASE_URL"].startswith(f"postgresql://{service}@")
        assert variables["DATABASE_PASSWORD"]["secretKeyRef"]["key"] == "password"
    else:
        assert "secretKeyRef" in variables["DATABASE_URL"]
    # Read as the pod reads them: from its environment (JSON for the maps).
    for name, value in variables.items():
        if isinstance(value, str):
            monkeypatch.setenv(name, value)
    settings = Settings(database_url="postgresql://app@db/app")
    assert settings.kafka_bootstrap_servers
    assert str(settings.alerts_file).startswith("/tmp/"), "the root filesystem is read-only"


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_files_are_the_repositorys_and_mounted_where_the_settings_say(variant: str) -> None:
    resources = rendered(variant)
    # Production reaches the parties through its own directory; the others use the repository's.
    directory = K8S / "overlays" / "prod" / "files" if variant == "prod" else REPOSITORY / "config"
    sources = {
        "DIRECTORY_FILE": directory / "directory.yaml",
        "POLICY_FILE": REPOSITORY / "services" / "escalation" / "policy.yaml",
    }
    readers = {
        "DIRECTORY_FILE": ("intake", "escalation", "notification", "audit", CONSOLE),
        "POLICY_FILE": ("escalation", "audit"),
    }
    for variable, original in sources.items():
        for service in readers[variable]:
            workload = deployment(resources, service)
            path = Path(environment(resources, workload)[variable])
            mount = next(
                m
                for m in main_container(workload)["volumeMounts"]
                if m["mountPath"] == str(path.parent)
            )
            volume = next(v for v in pod_spec(workload)["volumes"] if v["name"] == mount["name"])
            config_maps = [s["configMap"]["name"] for s in volume["projected"]["sources"]]
            files = {
                key: value
                for name in config_maps
                for key, value in named(resources, "ConfigMap", name)["data"].items()
            }
            assert files[path.name] == original.read_text(encoding="utf-8"), (
                f"{path.name} differs from {original.relative_to(REPOSITORY)}: "
                f"cp {original.relative_to(REPOSITORY)} deploy/k8s/base/files/"
            )


# --- migrations -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("service", DEPLOYED)
def test_a_job_migrates_each_schema_with_the_services_image(variant: str, service: str) -> None:
    resources = rendered(variant)
    job = named(resources, "Job", f"{service}-migrate")
    container = main_container(job)
    assert container["command"] == ["sqjz-migrate", "upgrade", service]
    assert container["image"] == main_container(deployment(resources, service))["image"]
    assert pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")
    job_database = environment(resources, job)["DATABASE_URL"]
    service_database = environment(resources, deployment(resources, service))["DATABASE_URL"]
    if variant == "prod":
        # The schema's owner migrates and grants the service's login, which owns nothing.
        assert job_database == service_database.replace(f"//{service}@", f"//{service}_owner@")
        assert environment(resources, job)["DATABASE_RUNTIME_ROLE"] == service
    else:
        assert job_database == service_database
    assert pod_labels(job)["app.kubernetes.io/component"] == "migration"
    assert selects(PART_OF, pod_labels(job))


# --- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_secret_value_is_committed(variant: str) -> None:
    resources = rendered(variant)
    assert not of_kind(resources, "Secret")
    for resource in resources:
        for where, value in walk_strings(resource):
            assert not URL_WITH_PASSWORD.search(value), f"{where}: credentials in a URL"
            assert "PRIVATE KEY" not in value, where
    for workload in workloads(resources):
        for container in pod_spec(workload)["containers"]:
            for variable in container.get("env", []):
                if SECRET_NAMES.search(variable["name"]):
                    assert "secretKeyRef" in variable.get("valueFrom", {}), variable["name"]
    for config_map in of_kind(resources, "ConfigMap"):
        for key in config_map["data"]:
            assert not SECRET_NAMES.search(key), f"{config_map['metadata']['name']}: {key}"


def secret_references(resources: list[Resource]) -> dict[str, set[str]]:
    """Secret name -> the services (or migrations) that reference it."""
    found: dict[str, set[str]] = {}
    for workload in workloads(resources):
        user = workload["metadata"]["name"]
        spec = pod_spec(workload)
        names = [v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v]
        for container in spec["containers"]:
            names += [
                s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s
            ]
            names += [
                v["valueFrom"]["secretKeyRef"]["name"]
                for v in container.get("env", [])
                if "secretKeyRef" in v.get("valueFrom", {})
            ]
        for name in names:
            found.setdefault(name, set()).add(user)
    return found


@pytest.mark.parametrize("variant", VARIANTS)
def test_secrets_are_referenced_by_name_where_needed(variant: str) -> None:
    references = secret_references(rendered(variant))
    if variant == "prod":
        # A login per service and per schema owner, a Kafka user per service.
        databases = {f"correction-emergency-db-{s}" for s in DEPLOYED} | {
            f"correction-emergency-db-{s}-owner" for s in DEPLOYED
        }
        for service in DEPLOYED:
            assert references[f"correction-emergency-db-{service}"] == {service}
            assert references[f"correction-emergency-db-{service}-owner"] == {f"{service}-migrate"}
            assert references[service] == {service}
        assert references["events-cluster-ca-cert"] == set(DEPLOYED)
        assert references["console-oidc"] == {CONSOLE}
        expected = SECRETS | PROD_SECRETS | databases | set(DEPLOYED) | {"events-cluster-ca-cert"}
    else:
        assert references["database"] == set(DEPLOYED) | {f"{s}-migrate" for s in DEPLOYED}
        expected = SECRETS | {"database"}
    # The console's tokens are verified against the same key set as everybody's.
    assert references["jwt-keys"] == set(DEPLOYED)
    assert references["console-signing-key"] == {CONSOLE}
    assert references["audit-signing-key"] == {"audit"}
    assert references["audit-key-encryption"] == {"audit"}
    assert references["notification-secrets"] == {"notification"}
    # Who may open personal data: intake seals it (and its migration seals rows written
    # before a field was sealed), audit opens it for a report read with pii:read; escalation
    # and notification see masked events only and keep no clear personal data.
    assert references["pii-key"] == {"intake", "intake-migrate", "audit"}
    assert set(references) == expected


def test_readme_names_every_secret() -> None:
    readme = (K8S / "README.md").read_text(encoding="utf-8")
    prod = {
        "database",
        "correction-emergency-db-<service>",
        "correction-emergency-db-<service>-owner",
        "events-cluster-ca-cert",
        "correction-emergency-tls",
    }
    for name in SECRETS | PROD_SECRETS | prod:
        assert f"`{name}`" in readme, name


# --- Kafka ----------------------------------------------------------------------------------

EXPECTED_TOPICS = {
    "dev": {"partitions": 6, "replicas": 1, "min.insync.replicas": "1"},
    "prod": {"partitions": 12, "replicas": 3, "min.insync.replicas": "2"},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_topic_and_its_dead_letter_topic_is_a_kafka_topic(variant: str) -> None:
    resources = rendered(variant)
    topics = {topic["spec"]["topicName"]: topic for topic in of_kind(resources, "KafkaTopic")}
    assert set(topics) == set(all_topics_with_dead_letters())
    settings = environment(resources, deployment(resources, "intake"))
    cluster = settings["KAFKA_BOOTSTRAP_SERVERS"].split("-kafka-bootstrap")[0]
    for name, topic in topics.items():
        assert topic["metadata"]["name"] == name
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == cluster
        assert topic["spec"]["partitions"] == int(settings["KAFKA_TOPIC_PARTITIONS"])
        assert topic["spec"]["replicas"] == int(settings["KAFKA_TOPIC_REPLICATION_FACTOR"])
        config = topic["spec"]["config"]
        assert int(config["retention.ms"]) >= 7 * 24 * 3600 * 1000
        assert int(config["min.insync.replicas"]) <= topic["spec"]["replicas"]
        if name.endswith(".dlq"):
            source = topics[name.removesuffix(".dlq")]["spec"]["config"]["retention.ms"]
            # As long as a record of its topic, no longer: a dead letter holds the same
            # personal data (reporters, actors, free text) and waits for a look as long.
            assert int(config["retention.ms"]) == int(source)
        expected = EXPECTED_TOPICS.get(variant)
        if expected:
            assert topic["spec"]["partitions"] == expected["partitions"]
            assert topic["spec"]["replicas"] == expected["replicas"]
            assert config["min.insync.replicas"] == expected["min.insync.replicas"]


def test_prod_producers_are_idempotent_and_dev_ones_match_the_default() -> None:
    for variant, expected in (("dev", "false"), ("prod", "true")):
        resources = rendered(variant)
        for service in DEPLOYED:
            variables = environment(resources, deployment(resources, service))
            assert variables["KAFKA_ENABLE_IDEMPOTENCE"] == expected


# --- scaling and disruption -----------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("service", DEPLOYED)
def test_each_service_has_an_autoscaler_and_a_disruption_budget(variant: str, service: str) -> None:
    resources = rendered(variant)
    workload = deployment(resources, service)
    autoscaler = named(resources, "HorizontalPodAutoscaler", service)
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": service,
    }
    partitions = int(environment(resources, workload)["KAFKA_TOPIC_PARTITIONS"])
    assert 1 <= autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]
    assert autoscaler["spec"]["maxReplicas"] <= partitions, "idle consumers past the partitions"
    budget = named(resources, "PodDisruptionBudget", service)
    assert budget["spec"]["selector"]["matchLabels"] == workload["spec"]["selector"]["matchLabels"]
    assert budget["spec"].get("maxUnavailable") == 1, "a budget that lets a node drain"
    job = named(resources, "Job", f"{service}-migrate")
    assert not selects(budget["spec"]["selector"]["matchLabels"], pod_labels(job))


def test_prod_runs_more_and_larger_pods_than_dev() -> None:
    def memory(quantity: str) -> int:
        return (
            int(quantity.removesuffix("Mi"))
            if quantity.endswith("Mi")
            else int(quantity.removesuffix("Gi")) * 1024
        )

    dev, prod = rendered("dev"), rendered("prod")
    for service in DEPLOYED:
        dev_scale = named(dev, "HorizontalPodAutoscaler", service)["spec"]
        prod_scale = named(prod, "HorizontalPodAutoscaler", service)["spec"]
        assert prod_scale["minReplicas"] > dev_scale["minReplicas"]
        assert prod_scale["minReplicas"] >= 3
        dev_memory = main_container(deployment(dev, service))["resources"]["limits"]["memory"]
        prod_memory = main_container(deployment(prod, service))["resources"]["limits"]["memory"]
        assert memory(prod_memory) > memory(dev_memory)


# --- network --------------------------------------------------------------------------------


def policies_selecting(resources: list[Resource], labels: dict[str, str]) -> list[Resource]:
    return [
        policy
        for policy in of_kind(resources, "NetworkPolicy")
        if selects(policy["spec"]["podSelector"].get("matchLabels", {}), labels)
    ]


def egress_ports(policies: list[Resource]) -> set[int]:
    return {
        port["port"]
        for policy in policies
        for rule in policy["spec"].get("egress", [])
        for port in rule.get("ports", [])
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_app_pods_are_denied_by_default_and_reached_only_from_the_ingress_controller(
    variant: str,
) -> None:
    resources = rendered(variant)
    for workload in workloads(resources):
        policies = policies_selecting(resources, pod_labels(workload))
        assert any(
            set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} and not p["spec"].get("ingress")
            for p in policies
        ), "a default deny"
        for policy in policies:
            for rule in policy["spec"].get("ingress", []):
                assert rule["from"] in ([INGRESS_CONTROLLER], [PROMETHEUS], [CONSOLE_PODS])
                assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    for service in DEPLOYED:
        annotations = deployment(resources, service)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/path"] == "/metrics"
        assert annotations["prometheus.io/port"] == str(PORTS[service])
        own = named(resources, "NetworkPolicy", service)
        assert (
            own["spec"]["podSelector"]["matchLabels"]
            == deployment(resources, service)["spec"]["selector"]["matchLabels"]
        )
        assert own["spec"]["ingress"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_app_pods_reach_dns_kafka_and_postgresql(variant: str) -> None:
    resources = rendered(variant)
    for workload in workloads(resources):
        ports = egress_ports(policies_selecting(resources, pod_labels(workload)))
        # Production meets Kafka on its TLS listener only.
        kafka = 9093 if variant == "prod" else 9092
        if variant == "base":
            assert {53, kafka} <= ports  # PostgreSQL differs per overlay
        else:
            assert {53, kafka, 5432} <= ports
    notification = pod_labels(deployment(resources, "notification"))
    assert 443 in egress_ports(policies_selecting(resources, notification))
    intake = pod_labels(deployment(resources, "intake"))
    assert 443 not in egress_ports(policies_selecting(resources, intake))


def test_only_the_services_reach_the_prod_database() -> None:
    resources = rendered("prod")
    (cluster,) = of_kind(resources, "Cluster")
    database_pods = {"cnpg.io/cluster": cluster["metadata"]["name"]}
    (policy,) = policies_selecting(resources, database_pods)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    for rule in policy["spec"]["ingress"]:
        for peer in rule["from"]:
            assert peer in (
                {"podSelector": {"matchLabels": PART_OF}},
                {"podSelector": {"matchLabels": database_pods}},
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "cnpg-system"}
                    }
                },
            )
    app_rule = next(
        r
        for r in policy["spec"]["ingress"]
        if r["from"] == [{"podSelector": {"matchLabels": PART_OF}}]
    )
    assert app_rule["ports"] == [{"port": 5432, "protocol": "TCP"}]


def test_prod_database_is_a_cloudnativepg_cluster_and_dev_an_external_url() -> None:
    prod = rendered("prod")
    (cluster,) = of_kind(prod, "Cluster")
    assert cluster["spec"]["instances"] >= 3
    host = f"{cluster['metadata']['name']}-rw:5432"
    for service in DEPLOYED:
        variables = environment(prod, deployment(prod, service))
        assert variables["DATABASE_URL"] == f"postgresql://{service}@{host}/app"
        assert variables["DATABASE_PASSWORD"]["secretKeyRef"] == {
            "name": f"{cluster['metadata']['name']}-{service}",
            "key": "password",
        }
    dev = rendered("dev")
    assert not of_kind(dev, "Cluster")
    reference = environment(dev, deployment(dev, "intake"))["DATABASE_URL"]["secretKeyRef"]
    assert reference == {"name": "database", "key": "url"}


# --- ingress --------------------------------------------------------------------------------

# (method, path) -> the service the ingress must forward it to, or None: stays inside.
ROUTES = {
    ("POST", "/v1/incidents"): "intake",
    ("GET", "/v1/incidents/7"): "intake",
    ("POST", "/v1/incidents/7/actions"): "intake",
    ("POST", "/v1/incidents/7/reports"): "intake",
    ("GET", "/v1/incidents/7/obligations"): "escalation",
    ("GET", "/v1/drills/compliance"): "escalation",
    ("GET", "/v1/obligations"): "escalation",
    ("POST", "/v1/policy/evaluate"): None,
    ("GET", "/v1/notifications"): "notification",
    ("GET", "/v1/notifications/7"): "notification",
    ("POST", "/v1/notifications/7/ack"): "notification",
    ("POST", "/v1/notifications/7/acknowledgement"): "notification",
    ("GET", "/v1/incidents/7/timeline"): "audit",
    ("GET", "/v1/log/head"): "audit",
    ("GET", "/v1/log/verify"): "audit",
    ("GET", "/v1/log/entries/7"): "audit",
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/metrics"): None,
    ("GET", "/docs"): None,
    ("GET", "/openapi.json"): None,
    # The duty console at / of the same host; the services' routes above keep their own.
    ("GET", "/"): CONSOLE,
    ("GET", "/login"): CONSOLE,
    ("POST", "/login/local"): CONSOLE,
    ("GET", "/login/callback"): CONSOLE,
    ("POST", "/logout"): CONSOLE,
    ("GET", "/live"): CONSOLE,
    ("GET", "/duties"): CONSOLE,
    ("GET", "/drills"): CONSOLE,
    ("GET", "/findings"): CONSOLE,
    ("POST", "/findings/7/review"): CONSOLE,
    ("GET", "/incidents/new"): CONSOLE,
    ("POST", "/incidents"): CONSOLE,
    ("GET", "/incidents/7"): CONSOLE,
    ("GET", "/incidents/7/investigation"): CONSOLE,
    ("GET", "/incidents/7/trace"): CONSOLE,
    ("POST", "/incidents/7/actions"): CONSOLE,
    ("POST", "/incidents/7/reports"): CONSOLE,
    ("POST", "/incidents/7/links"): CONSOLE,
    ("POST", "/incidents/7/accountability"): CONSOLE,
    ("POST", "/notifications/7/acknowledge"): CONSOLE,
    ("GET", "/static/console.js"): CONSOLE,
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_ingress_forwards_reporting_reads_and_acknowledgements_only(variant: str) -> None:
    resources = rendered(variant)
    for (_, path), service in ROUTES.items():
        assert ingress_backend(resources, path) == service, path
    ingresses = of_kind(resources, "Ingress")
    # One public host for the APIs, acknowledgement links and the console.
    assert len({host["host"] for ingress in ingresses for host in ingress["spec"]["rules"]}) == 1
    for ingress in ingresses:
        for host in ingress["spec"]["rules"]:
            for rule in host["http"]["paths"]:
                backend = rule["backend"]["service"]
                assert backend["port"] == {"name": "http"}
                service = named(resources, "Service", backend["name"])
                assert service["spec"]["ports"][0]["targetPort"] == "http"
                assert (
                    service["spec"]["selector"]
                    == deployment(resources, backend["name"])["spec"]["selector"]["matchLabels"]
                )
        if variant == "prod":
            assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_consoles_live_stream_is_passed_through_unbuffered_and_kept_open(
    variant: str,
) -> None:
    """ingress-nginx buffers responses and closes a proxied connection silent for 60 s: the
    server-sent events of /live would arrive late, in bursts, and drop every minute."""
    resources = rendered(variant)
    (live,) = [
        ingress
        for ingress in of_kind(resources, "Ingress")
        for host in ingress["spec"]["rules"]
        for rule in host["http"]["paths"]
        if re.fullmatch(rule["path"], "/live")
    ]
    paths = [rule["path"] for host in live["spec"]["rules"] for rule in host["http"]["paths"]]
    assert paths == ["/live$"], "the stream's annotations apply to nothing else"
    annotations = live["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 600
    # ingress-nginx applies use-regex to every path of the host: both must say so.
    for ingress in of_kind(resources, "Ingress"):
        assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/use-regex"] == (
            "true"
        )


def test_every_route_of_the_services_is_forwarded_to_its_own_service_or_not_at_all() -> None:
    """Compare the Ingress with the routes the apps really serve."""
    import importlib

    settings = Settings(database_url="postgresql://app@db/app", kafka_bootstrap_servers="k:9092")
    resources = rendered("base")
    for service in DEPLOYED:
        app = importlib.import_module(f"services.{service}.app").create_app(settings)
        for route in app.routes:
            path = re.sub(r"\{[^}]+\}", "7", getattr(route, "path", ""))
            methods = getattr(route, "methods", None) or {"GET"}
            forwarded = ingress_backend(resources, path)
            assert forwarded in (None, service), f"{service} {path} goes to {forwarded}"
            if forwarded and methods - {"GET", "HEAD"}:
                assert {(m, path) for m in methods} & set(ROUTES), (
                    f"{methods} {path} is forwarded but not in ROUTES"
                )


# --- Kafka users ----------------------------------------------------------------------------


def kafka_permissions(user: Resource) -> set[tuple[str, str, str, str]]:
    return {
        (acl["resource"]["type"], acl["resource"]["name"], acl["resource"]["patternType"], op)
        for acl in user["spec"]["authorization"]["acls"]
        for op in acl["operations"]
    }


def test_each_service_writes_only_its_own_topic_as_its_own_kafka_user() -> None:
    """The KafkaUsers' ACLs against what the code produces and consumes."""
    from tools.contracts import PRODUCERS, services

    resources = rendered("prod")
    consumers = {name: specs for name, (_, specs) in services().items()}
    for service in SERVICE_NAMES:
        variables = environment(resources, deployment(resources, service))
        assert variables["KAFKA_SASL_USERNAME"] == service
        permissions = kafka_permissions(named(resources, "KafkaUser", service))
        read = {t for spec in consumers[service] for t in spec.topics}
        written = {topic for topic, producer in PRODUCERS.items() if producer == service}
        written |= {dead_letter_topic(topic) for topic in read}
        assert {n for kind, n, _, op in permissions if kind == "topic" and op == "Write"} == written
        assert {n for kind, n, _, op in permissions if kind == "topic" and op == "Read"} == read
        groups = {(n, pattern) for kind, n, pattern, _ in permissions if kind == "group"}
        assert groups == {(f"{service}.", "prefix")}
        assert all(spec.group.startswith(f"{service}.") for spec in consumers[service])
    # Nobody but notification may write what the escalation ladder acts on.
    writers = {
        user["metadata"]["name"]
        for user in of_kind(resources, "KafkaUser")
        if ("topic", "notifications.v1", "literal", "Write") in kafka_permissions(user)
    }
    assert writers == {"notification", "operations"}


def test_the_console_reads_the_four_topics_and_writes_only_its_dead_letters() -> None:
    """The console publishes nothing: it reads incidents in its group (dead letters of what
    that group cannot apply go to incidents.v1.dlq) and every topic for live updates."""
    from shared.events.topics import ALL_TOPICS
    from tools.contracts import build_service, document_settings

    resources = rendered("prod")
    variables = environment(resources, deployment(resources, CONSOLE))
    assert variables["KAFKA_SASL_USERNAME"] == CONSOLE
    _, consumers = build_service(CONSOLE, document_settings())
    grouped = {topic for spec in consumers for topic in spec.topics}
    permissions = kafka_permissions(named(resources, "KafkaUser", CONSOLE))
    written = {n for kind, n, _, op in permissions if kind == "topic" and op == "Write"}
    assert written == {dead_letter_topic(topic) for topic in grouped}
    assert {n for kind, n, _, op in permissions if kind == "topic" and op == "Read"} == set(
        ALL_TOPICS
    )
    groups = {(n, pattern) for kind, n, pattern, _ in permissions if kind == "group"}
    assert groups == {(f"{CONSOLE}.", "prefix")}
    assert all(spec.group.startswith(f"{CONSOLE}.") for spec in consumers)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_console_reaches_the_services_apis_and_the_identity_provider(variant: str) -> None:
    resources = rendered(variant)
    console = pod_labels(deployment(resources, CONSOLE))
    egress = [
        rule
        for policy in policies_selecting(resources, console)
        for rule in policy["spec"].get("egress", [])
    ]
    for service in SERVICE_NAMES:
        target = pod_labels(deployment(resources, service))
        assert any(
            any(
                "podSelector" in peer
                and selects(peer["podSelector"].get("matchLabels", {}), target)
                and all(
                    target.get(expression["key"]) in expression["values"]
                    for expression in peer["podSelector"].get("matchExpressions", [])
                )
                for peer in rule["to"]
            )
            and {"port": "http", "protocol": "TCP"} in rule["ports"]
            for rule in egress
        ), f"the console cannot reach {service}"
        admitted = [
            rule["from"] for rule in named(resources, "NetworkPolicy", service)["spec"]["ingress"]
        ]
        assert [CONSOLE_PODS] in admitted, f"{service} does not admit the console"
    # The county's identity provider (discovery, token endpoint, keys) is outside the cluster.
    assert 443 in egress_ports(policies_selecting(resources, console))


def test_prod_clients_meet_kafka_with_scram_over_tls() -> None:
    from shared.kafka import connection_options

    resources = rendered("prod")
    variables = environment(resources, deployment(resources, "intake"))
    plain = {name.lower(): value for name, value in variables.items() if isinstance(value, str)}
    settings = Settings(**{**plain, "kafka_sasl_password": "from-the-secret"})
    options = connection_options(settings.model_copy(update={"kafka_ssl_cafile": None}))
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "intake",
        "from-the-secret",
    )
    assert options["ssl_context"].verify_mode.name == "CERT_REQUIRED"
