"""The Helm chart renders, lints, validates against the Kubernetes schemas, and matches the daemon.

No cluster: the chart is rendered offline with the Helm SDK and every manifest is checked with
``kubernetes-validate`` in strict mode (unknown fields are errors).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import helm_python
import jsonschema  # type: ignore[import-untyped]  # no stubs; only mypy on bridge/ is required
import kubernetes_validate
import pytest
import yaml

from bridge.config import Settings
from tests.deploy.chart import CHART_DIR, KUBE_VERSIONS, NAMESPACE, Rendered, load_chart, render

MONITORING_API = "monitoring.coreos.com/v1"

# Settings the chart does not take from `config`: secrets come from the Secret, the rest are chart-owned
# (values of their own: the scale-out settings, the partition count above all, must be the same in every
# replica; the replica name is the pod's).
SECRET_SETTINGS = {"amqp_url", "state_key", "state_old_keys", "admin_token"}
CHART_OWNED_SETTINGS = {
    "http_host",
    "http_port",
    "drain_timeout_s",
    "state_key_file",
    "admin_port",
    "admin_host",
    "partitions",
    "probe_interval_s",
    "balance_interval_s",
    "fence_grace_s",
    "replica_name",
}

# Realistic value sets: each one renders, lints and validates.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "existing-secret": {
        "secret": {
            "existingSecret": "genesys-bridge-credentials",
            "keys": {"amqpUrl": "connection_string", "stateKey": "state-key", "stateOldKeys": "old-keys"},
        },
    },
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "brokerPorts": [5671],
            "brokerPeers": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "rabbitmq"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "rabbitmq"}},
                }
            ],
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "extraEgress": [{"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 3128}]}],
        },
    },
    "service-monitor": {"serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "kps"}}},
    "production": {
        "image": {"digest": "sha256:" + "ab" * 32},
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"create": False, "name": "bridge"},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
        "drainTimeoutSeconds": 45,
        "httpPort": 9102,
        "replicaCount": 6,
        "partitions": 32,
        "probeIntervalSeconds": 1.5,
        "balanceIntervalSeconds": 10,
        "fenceGraceSeconds": 0.5,
        "service": {"port": 9102},
        "config": {
            "BRIDGE_ALLOWED_DEPLOYMENTS": [
                "0f2c6b9e-1111-2222-3333-444455556666",
                "a1b2c3d4-aaaa-bbbb-cccc-ddddeeeeffff",
            ],
            "BRIDGE_DEFAULT_ORIGIN": "https://shop.example.com",
            "BRIDGE_MAX_SESSIONS": 20000,
            "BRIDGE_PREFETCH": 512,
            "BRIDGE_SEND_RATE_PER_S": 1.5,
            "BRIDGE_WS_PING_INTERVAL_S": "",
            "BRIDGE_LOG_LEVEL": "WARNING",
        },
        "podAnnotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"},
        "priorityClassName": "high",
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "messaging", "effect": "NoSchedule"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "genesys-bridge"}},
            }
        ],
        "podDisruptionBudget": {"enabled": False},
    },
    "scaled-to-zero": {"replicaCount": 0},
    "single-replica": {"replicaCount": 1, "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1}},
    "recreate": {"updateStrategy": {"type": "Recreate"}, "topologySpread": {"enabled": False}},
    "zone-spread": {"replicaCount": 9, "topologySpread": {"topologyKey": "topology.kubernetes.io/zone", "maxSkew": 2}},
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "kps"}},
        "runbookBaseUrl": "https://git.example.com/messaging/genesys-bridge/blob/v0.1.0/docs/runbook.md",
        "grafanaDashboard": {
            "enabled": True,
            "label": "grafana.example.com/dashboard",
            "labelValue": "messaging",
            "annotations": {"grafana_folder": "Messaging"},
        },
    },
    # An egress proxy (HTTPS_PROXY) and the state key read from a mounted file (BRIDGE_STATE_KEY_FILE).
    "proxy-and-key-file": {
        "extraEnv": [
            {"name": "HTTPS_PROXY", "value": "http://proxy.infra:3128"},
            {"name": "NO_PROXY", "value": "rabbitmq,.svc,.cluster.local"},
            {"name": "BRIDGE_STATE_KEY_FILE", "value": "/var/run/secrets/bridge/state-key"},
        ],
        "extraEnvFrom": [{"configMapRef": {"name": "egress-proxy"}}, {"secretRef": {"name": "bridge-extra"}}],
        "extraVolumes": [
            {"name": "state-key", "secret": {"secretName": "bridge-state-key", "defaultMode": 0o400}},
        ],
        "extraVolumeMounts": [{"name": "state-key", "mountPath": "/var/run/secrets/bridge", "readOnly": True}],
    },
    "admin": {"admin": {"enabled": True, "port": 9191, "existingSecret": "bridge-admin", "tokenKey": "token"}},
    "no-helm-test": {"helmTest": {"enabled": False}},
}


def _env_name(field: str) -> str:
    return "BRIDGE_" + field.upper()


def _all(value_set: str) -> Rendered:
    return render(VALUE_SETS[value_set], api_versions=(MONITORING_API,))


# --- render, lint, validate -------------------------------------------------------------------------


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_manifest_is_valid_kubernetes(value_set: str, kube_version: str) -> None:
    rendered = render(VALUE_SETS[value_set], api_versions=(MONITORING_API,), kube_version=kube_version)
    assert rendered.manifests
    for manifest in rendered.manifests:
        if manifest["apiVersion"] == MONITORING_API:
            continue  # a CRD: not in the Kubernetes schemas, checked by test_service_monitor_*
        kubernetes_validate.validate(manifest, kube_version, strict=True)
        assert manifest["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_chart_lints_clean(value_set: str) -> None:
    report = helm_python.lint(CHART_DIR, VALUE_SETS[value_set], strict=True, namespace=NAMESPACE)
    # severity 2 = warning, 3 = error; 1 (info) is only "icon is recommended".
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems, problems
    assert not report["errors"]


def test_default_render_has_the_expected_objects() -> None:
    kinds = sorted(m["kind"] for m in render().manifests)
    # The Pod is the `helm test` hook (helmTest.enabled defaults to true).
    assert kinds == ["ConfigMap", "Deployment", "Pod", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"]


# --- values.schema.json -----------------------------------------------------------------------------


def test_schema_is_a_valid_json_schema_and_accepts_the_defaults() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(defaults)


def _leaf_paths(node: Any, prefix: str = "") -> set[str]:
    if isinstance(node, dict) and node:
        paths: set[str] = set()
        for key, value in node.items():
            paths |= _leaf_paths(value, f"{prefix}.{key}" if prefix else key)
        return paths
    return {prefix}


def _schema_has(schema: dict[str, Any], path: str) -> bool:
    node = schema
    for part in path.split("."):
        props = node.get("properties", {})
        if part not in props:
            # Free-form Kubernetes objects (resources, securityContext ...) are typed as a whole.
            return node.get("type") == "object" and node.get("additionalProperties", True) is not False
        node = props[part]
    return True


def test_schema_covers_every_value() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    missing = sorted(p for p in _leaf_paths(defaults) if not _schema_has(schema, p))
    assert not missing, f"values without a schema: {missing}"
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) - {"global"} == set(defaults)


def test_schema_config_keys_are_exactly_the_daemon_settings() -> None:
    """`config` accepts every daemon setting the chart does not own, by its env name, and nothing else."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    config = schema["properties"]["config"]
    assert config["additionalProperties"] is False
    expected = {_env_name(f) for f in Settings.model_fields} - {
        _env_name(f) for f in SECRET_SETTINGS | CHART_OWNED_SETTINGS
    }
    assert set(config["properties"]) == expected, (
        "values.schema.json `config` is out of step with bridge/config.py Settings: "
        f"missing {sorted(expected - set(config['properties']))}, "
        f"unknown {sorted(set(config['properties']) - expected)}"
    )


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replicaCount": -1}, "/replicaCount"),  # negative replicas
        ({"replicaCount": "1"}, "/replicaCount"),  # wrong type
        ({"partitions": 0}, "/partitions"),
        ({"partitions": 1025}, "/partitions"),  # the daemon's limit
        ({"partitions": "16"}, "/partitions"),
        ({"probeIntervalSeconds": 0}, "/probeIntervalSeconds"),
        ({"balanceIntervalSeconds": -5}, "/balanceIntervalSeconds"),
        ({"fenceGraceSeconds": -1}, "/fenceGraceSeconds"),
        ({"updateStrategy": {"type": "BlueGreen"}}, "/updateStrategy/type"),
        ({"updateStrategy": {"rollingUpdate": {"maxSurge": "lots"}}}, "/updateStrategy/rollingUpdate/maxSurge"),
        ({"updateStrategy": {"rollingUpdate": {"maxSurge": 0}}}, "/updateStrategy/rollingUpdate"),  # 0 and 0
        ({"topologySpread": {"maxSkew": 0}}, "/topologySpread/maxSkew"),
        ({"topologySpread": {"whenUnsatisfiable": "DoNotSchedule"}}, "'whenUnsatisfiable' not allowed"),
        ({"config": {"BRIDGE_PARTITIONS": 32}}, "'BRIDGE_PARTITIONS' not allowed"),  # chart-owned
        ({"config": {"BRIDGE_REPLICA_NAME": "a"}}, "'BRIDGE_REPLICA_NAME' not allowed"),  # the pod's name
        ({"replicas": 1}, "'replicas' not allowed"),  # unknown top-level key (a typo)
        ({"image": {"tag": 3}}, "/image/tag"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"httpPort": 70000}, "/httpPort"),
        ({"httpPort": "8080"}, "/httpPort"),
        ({"drainTimeoutSeconds": 0}, "/drainTimeoutSeconds"),
        ({"config": {"BRIDGE_NOT_A_SETTING": "x"}}, "'BRIDGE_NOT_A_SETTING' not allowed"),
        ({"config": {"BRIDGE_AMQP_URL": "amqp://u:p@h/"}}, "'BRIDGE_AMQP_URL' not allowed"),  # a secret
        ({"config": {"BRIDGE_HTTP_PORT": 9000}}, "'BRIDGE_HTTP_PORT' not allowed"),  # chart-owned
        ({"config": {"BRIDGE_PREFETCH": 0}}, "/config/BRIDGE_PREFETCH"),
        ({"config": {"BRIDGE_LOG_LEVEL": "TRACE"}}, "/config/BRIDGE_LOG_LEVEL"),
        ({"config": {"BRIDGE_MAX_SESSIONS": "many"}}, "/config/BRIDGE_MAX_SESSIONS"),
        ({"secret": {"amqpUrl": "http://not-amqp"}}, "/secret/amqpUrl"),
        ({"secret": {"extra": "x"}}, "'extra' not allowed"),
        ({"serviceMonitor": {"enabled": "yes"}}, "/serviceMonitor/enabled"),
        ({"serviceMonitor": {"interval": "30"}}, "/serviceMonitor/interval"),
        ({"podDisruptionBudget": {"maxUnavailable": "half"}}, "/podDisruptionBudget/maxUnavailable"),
        ({"networkPolicy": {"brokerPorts": [0]}}, "/networkPolicy/brokerPorts/0"),
        ({"livenessProbe": {"periodSeconds": 0}}, "/livenessProbe/periodSeconds"),
    ],
)
def test_schema_refuses_bad_values(values: dict[str, Any], where: str) -> None:
    with load_chart() as chart:
        with pytest.raises(helm_python.HelmValuesError, match=re.escape(where)):
            chart.validate_schema(chart.merge_values(values))
        with pytest.raises(helm_python.HelmError, match=re.escape(where)):
            chart.render(values, name="gb", namespace=NAMESPACE)


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_schema_accepts_the_realistic_value_sets(value_set: str) -> None:
    with load_chart() as chart:
        chart.validate_schema(chart.merge_values(VALUE_SETS[value_set]))


# --- security ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_pod_and_container_are_locked_down(value_set: str) -> None:
    rendered = _all(value_set)
    pod = rendered.pod_spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == 10001  # the Dockerfile's USER
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = rendered.container["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == 10001
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["privileged"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert "add" not in ctx["capabilities"]
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    # The one writable path is an emptyDir at /tmp (the image's HOME and TMPDIR); extra mounts are read-only.
    mounts = {m["mountPath"]: m["name"] for m in rendered.container["volumeMounts"] if not m.get("readOnly")}
    volumes = {v["name"]: v for v in rendered.pod_spec["volumes"]}
    assert mounts == {"/tmp": "tmp"}
    assert "emptyDir" in volumes["tmp"]
    assert rendered.pod_spec["automountServiceAccountToken"] is False


# --- the chart matches the daemon ---------------------------------------------------------------------


def _env_names(rendered: Rendered) -> set[str]:
    names = {e["name"] for e in rendered.container.get("env", [])}
    configmaps = {m["metadata"]["name"]: m for m in rendered.kind("ConfigMap")}
    for source in rendered.container.get("envFrom", []):
        assert "prefix" not in source
        if source.get("configMapRef", {}).get("name") in configmaps:  # the chart's own (not extraEnvFrom)
            names |= set(configmaps[source["configMapRef"]["name"]]["data"])
    return names


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_env_name_is_a_daemon_setting(value_set: str) -> None:
    settings = {_env_name(f) for f in Settings.model_fields}
    # extraEnv is the user's (proxy variables are not the daemon's settings); the rest is the chart's.
    extra = {e["name"] for e in VALUE_SETS[value_set].get("extraEnv", [])}
    names = _env_names(_all(value_set)) - extra
    assert names, "the chart sets no environment"
    assert names <= settings, f"not settings of the daemon: {sorted(names - settings)}"
    assert {"BRIDGE_AMQP_URL", "BRIDGE_STATE_KEY", "BRIDGE_HTTP_PORT", "BRIDGE_DRAIN_TIMEOUT_S"} <= names


def test_configmap_values_are_what_the_daemon_parses() -> None:
    """The rendered ConfigMap, fed to Settings as the environment, validates and means what values said."""
    rendered = _all("production")
    data = rendered.settings_configmap["data"]
    env = {k.removeprefix("BRIDGE_").lower(): v for k, v in data.items()}
    settings = Settings.model_validate(env)
    assert settings.allowed_deployments == VALUE_SETS["production"]["config"]["BRIDGE_ALLOWED_DEPLOYMENTS"]
    assert settings.max_sessions == 20000
    assert settings.send_rate_per_s == 1.5
    assert settings.ws_ping_interval_s is None
    assert settings.http_port == 9102
    assert settings.drain_timeout_s == 45
    assert data["BRIDGE_MAX_SESSIONS"] == "20000"  # not "2e+04"
    assert (settings.partitions, settings.probe_interval_s, settings.balance_interval_s, settings.fence_grace_s) == (
        32,
        1.5,
        10,
        0.5,
    )
    assert data["BRIDGE_PARTITIONS"] == "32"


def test_scale_out_settings_default_to_the_daemon_defaults() -> None:
    """The chart's defaults are the daemon's, so a value left alone means the same with or without the chart."""
    data = render().settings_configmap["data"]
    settings = Settings.model_validate({k.removeprefix("BRIDGE_").lower(): v for k, v in data.items()})
    defaults = Settings()
    for field in ("partitions", "probe_interval_s", "balance_interval_s", "fence_grace_s"):
        assert getattr(settings, field) == getattr(defaults, field), field


def test_secrets_never_land_in_the_configmap() -> None:
    for value_set in VALUE_SETS:
        data = _all(value_set).settings_configmap["data"]
        assert not {_env_name(f) for f in SECRET_SETTINGS} & set(data)


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_probes_hit_the_daemon_endpoints(value_set: str) -> None:
    rendered = _all(value_set)
    container = rendered.container
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    port_setting = int(rendered.settings_configmap["data"]["BRIDGE_HTTP_PORT"])
    assert ports["http"] == port_setting
    if not VALUE_SETS[value_set].get("httpPort"):
        assert port_setting == Settings().http_port == 8080
    paths = {
        probe: (container[probe]["httpGet"]["path"], container[probe]["httpGet"]["port"])
        for probe in ("livenessProbe", "readinessProbe", "startupProbe")
    }
    assert paths == {
        "livenessProbe": ("/healthz", "http"),
        "readinessProbe": ("/readyz", "http"),
        "startupProbe": ("/healthz", "http"),
    }
    service = rendered.one("Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == rendered.deployment["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("drain", [1, 20, 45, 300])
def test_grace_period_outlasts_the_drain(drain: int) -> None:
    rendered = render({"drainTimeoutSeconds": drain})
    grace = rendered.pod_spec["terminationGracePeriodSeconds"]
    drain_setting = float(rendered.settings_configmap["data"]["BRIDGE_DRAIN_TIMEOUT_S"])
    assert drain_setting == drain
    assert grace > drain_setting
    assert grace - drain_setting >= 5, "leave the process time to exit after the drain"


def test_default_grace_period_outlasts_the_daemon_default_drain() -> None:
    assert render().pod_spec["terminationGracePeriodSeconds"] > Settings().drain_timeout_s


def test_image_runs_the_daemon() -> None:
    rendered = render()
    assert rendered.container["image"] == "genesys-bridge:0.1.0"  # appVersion
    assert rendered.container["args"] == ["run"]
    assert "command" not in rendered.container  # keep the image's exec-form ENTRYPOINT (PID 1 gets SIGTERM)
    digest = VALUE_SETS["production"]["image"]["digest"]
    assert _all("production").container["image"].endswith("@" + digest)


# --- replicas ---------------------------------------------------------------------------------------


def test_several_replicas_rolled_one_at_a_time() -> None:
    """A surge pod turns ready (a standby) before an old pod drains, so its partitions always have a taker."""
    deployment = render().deployment
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert _all("production").deployment["spec"]["replicas"] == 6


def test_recreate_strategy_has_no_rolling_update_block() -> None:
    """The API server refuses rollingUpdate with Recreate, and the values still carry the default one."""
    assert _all("recreate").deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_disruption_budget_lets_a_drain_take_one_pod_at_a_time() -> None:
    for value_set in ("defaults", "single-replica", "production"):
        rendered = _all(value_set)
        found = rendered.kind("PodDisruptionBudget")
        if VALUE_SETS[value_set].get("podDisruptionBudget", {}).get("enabled") is False:
            assert not found
            continue
        (pdb,) = found
        assert pdb["spec"]["maxUnavailable"] == 1  # never minAvailable: one replica must stay evictable
        assert "minAvailable" not in pdb["spec"]
        assert pdb["spec"]["selector"]["matchLabels"] == rendered.deployment["spec"]["selector"]["matchLabels"]


def test_pods_spread_softly_over_nodes() -> None:
    rendered = render()
    (constraint,) = rendered.pod_spec["topologySpreadConstraints"]
    assert constraint == {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",  # a cluster with fewer nodes than replicas still schedules all
        "labelSelector": {"matchLabels": rendered.deployment["spec"]["selector"]["matchLabels"]},
    }
    (zone,) = _all("zone-spread").pod_spec["topologySpreadConstraints"]
    assert (zone["topologyKey"], zone["maxSkew"]) == ("topology.kubernetes.io/zone", 2)
    assert "topologySpreadConstraints" not in _all("recreate").pod_spec
    # A list of one's own replaces the chart's constraint.
    own = VALUE_SETS["production"]["topologySpreadConstraints"]
    assert _all("production").pod_spec["topologySpreadConstraints"] == own


def test_replica_name_is_the_pod_name() -> None:
    """Broker connections and the admin endpoint's `owner` then name the pod."""
    env = {e["name"]: e for e in render().container["env"]}
    assert env["BRIDGE_REPLICA_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # A Deployment's pod names (ReplicaSet name, a dash, five characters; at most 63) are valid replica names.
    Settings.model_validate({"replica_name": "gb-genesys-bridge-7d9f8c6b5-x2k4q"})
    Settings.model_validate({"replica_name": "a" * 57 + "-x2k4q"})


def test_notes_name_the_partition_count_and_warn_about_a_single_replica() -> None:
    notes = render().notes
    assert "Replicas: 2, sharing 16 partitions" in notes
    assert "docs/scaling.md" in notes
    assert "NOTE: one replica" not in notes
    assert "NOTE: one replica" in _all("single-replica").notes


# --- secrets ------------------------------------------------------------------------------------------


def _secret_refs(rendered: Rendered) -> dict[str, dict[str, Any]]:
    env = rendered.container["env"]
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "secretKeyRef" in e.get("valueFrom", {})}


def test_existing_secret_is_referenced_and_no_secret_is_made() -> None:
    rendered = _all("existing-secret")
    assert not rendered.kind("Secret")
    refs = _secret_refs(rendered)
    assert refs["BRIDGE_AMQP_URL"] == {"name": "genesys-bridge-credentials", "key": "connection_string"}
    assert refs["BRIDGE_STATE_KEY"]["key"] == "state-key"
    assert refs["BRIDGE_STATE_OLD_KEYS"]["key"] == "old-keys"
    assert "WARNING: the AMQP URL" not in rendered.notes


def test_trial_secret_holds_the_url_and_a_generated_state_key() -> None:
    rendered = render()
    secret = rendered.one("Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["BRIDGE_AMQP_URL"].startswith("amqp://")
    assert len(base64.urlsafe_b64decode(data["BRIDGE_STATE_KEY"])) == 32  # the Fernet key format
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    refs = _secret_refs(rendered)
    assert {r["name"] for r in refs.values()} == {secret["metadata"]["name"]}
    assert "WARNING: the AMQP URL" in rendered.notes


def test_trial_secret_takes_a_given_state_key() -> None:
    secret = render({"secret": {"stateKey": "k" * 43 + "=", "stateOldKeys": "a,b"}}).one("Secret")
    assert base64.b64decode(secret["data"]["BRIDGE_STATE_KEY"]).decode() == "k" * 43 + "="
    assert base64.b64decode(secret["data"]["BRIDGE_STATE_OLD_KEYS"]).decode() == "a,b"


# --- checksums roll the pods ----------------------------------------------------------------------------


def _checksums(values: dict[str, Any]) -> dict[str, str]:
    annotations = render(values).deployment["spec"]["template"]["metadata"]["annotations"]
    return {k: v for k, v in annotations.items() if k.startswith("checksum/")}


def test_checksums_change_with_config_and_secret_only() -> None:
    base = _checksums({})
    assert set(base) == {"checksum/config", "checksum/secret"}
    assert _checksums({}) == base, "checksums must be deterministic"
    config = _checksums({"config": {"BRIDGE_PREFETCH": 64}})
    assert config["checksum/config"] != base["checksum/config"]
    assert config["checksum/secret"] == base["checksum/secret"]
    secret = _checksums({"secret": {"amqpUrl": "amqp://u:other@rabbitmq:5672/"}})
    assert secret["checksum/secret"] != base["checksum/secret"]
    assert secret["checksum/config"] == base["checksum/config"]
    unrelated = _checksums({"resources": {"requests": {"cpu": "1"}}})
    assert unrelated == base


# --- optional objects -----------------------------------------------------------------------------------


def test_service_monitor_needs_both_the_flag_and_the_crd() -> None:
    values = VALUE_SETS["service-monitor"]
    with_crd = render(values, api_versions=(MONITORING_API,))
    monitor = with_crd.one("ServiceMonitor")
    endpoint = monitor["spec"]["endpoints"][0]
    service = with_crd.one("Service")
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()

    without_crd = render(values)
    assert not without_crd.kind("ServiceMonitor")
    assert "no ServiceMonitor was created" in without_crd.notes
    assert not render({}, api_versions=(MONITORING_API,)).kind("ServiceMonitor")


def test_network_policy_allows_dns_broker_https_and_scrapes() -> None:
    policy = _all("network-policy").one("NetworkPolicy")["spec"]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    egress_ports = [{(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]} for rule in policy["egress"]]
    assert {(53, "UDP"), (53, "TCP")} in egress_ports
    assert {(5671, "TCP")} in egress_ports
    assert {(443, "TCP")} in egress_ports
    broker = policy["egress"][egress_ports.index({(5671, "TCP")})]
    assert broker["to"] == VALUE_SETS["network-policy"]["networkPolicy"]["brokerPeers"]
    assert policy["egress"][-1] == VALUE_SETS["network-policy"]["networkPolicy"]["extraEgress"][0]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    *scrapers, helm_test = ingress["from"]
    assert scrapers == VALUE_SETS["network-policy"]["networkPolicy"]["metricsFrom"]
    test_pod = _all("network-policy").one("Pod")
    assert helm_test["podSelector"]["matchLabels"].items() <= test_pod["metadata"]["labels"].items()
    without_test = render({**VALUE_SETS["network-policy"], "helmTest": {"enabled": False}}).one("NetworkPolicy")
    assert without_test["spec"]["ingress"][0]["from"] == scrapers
    open_policy = render({"networkPolicy": {"enabled": True}}).one("NetworkPolicy")
    assert "from" not in open_policy["spec"]["ingress"][0], "no metricsFrom: any source, the test pod too"
    assert not render().kind("NetworkPolicy")


def test_existing_service_account_is_used_not_made() -> None:
    rendered = _all("production")
    assert not rendered.kind("ServiceAccount")
    assert rendered.pod_spec["serviceAccountName"] == "bridge"


# --- documentation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", ["helm/genesys-bridge/README.md", "docs/deploy.md"])
def test_values_tables_list_every_value_and_config_key(doc: str) -> None:
    text = (CHART_DIR.parents[1] / doc).read_text()
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    documented = set(re.findall(r"^\| `([^`]+)` \|", text, flags=re.MULTILINE))
    # Every top-level value, and every documented leaf is a real value path.
    assert set(defaults) <= {p.split(".")[0] for p in documented}
    assert set(schema["properties"]["config"]["properties"]) <= documented
    value_paths = _leaf_paths(defaults)
    settings = {_env_name(f) for f in Settings.model_fields}
    for path in documented - set(schema["properties"]["config"]["properties"]):
        if path.startswith("BRIDGE_"):
            assert path in settings, f"{doc}: no setting {path}"
            continue
        assert any(p == path or p.startswith(path + ".") for p in value_paths), f"{doc}: no value {path}"


def test_the_documented_production_values_install() -> None:
    text = (CHART_DIR.parents[1] / "docs" / "deploy.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL) if "# values-prod.yaml" in b]
    values = yaml.safe_load(block.replace("\n   ", "\n"))  # the block is indented inside a list item
    rendered = render(values, api_versions=(MONITORING_API,))
    assert rendered.one("ServiceMonitor")
    for manifest in rendered.manifests:
        if manifest["apiVersion"] != MONITORING_API:
            kubernetes_validate.validate(manifest, KUBE_VERSIONS[-1], strict=True)


# --- monitoring objects ---------------------------------------------------------------------------------

RULES_FILE = CHART_DIR / "files" / "prometheus-rules.yaml"
DASHBOARD_FILE = CHART_DIR / "files" / "grafana-dashboard.json"


def test_prometheus_rule_is_the_rule_file_with_the_runbook_base() -> None:
    values = VALUE_SETS["monitoring"]
    rule = render(values, api_versions=(MONITORING_API,)).one("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    base = values["runbookBaseUrl"]
    expected = yaml.safe_load(RULES_FILE.read_text().replace('"docs/runbook.md#', f'"{base}#'))
    assert rule["spec"] == expected
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts
    for alert in alerts:
        assert alert["annotations"]["runbook_url"] == f"{base}#{alert['alert'].lower()}"
    # Prometheus templates survive: the file is not run through Helm's template engine.
    assert "{{ $labels.instance }}" in json.dumps(rule["spec"])


def test_prometheus_rule_keeps_the_repository_path_by_default() -> None:
    rule = render({"prometheusRule": {"enabled": True}}, api_versions=(MONITORING_API,)).one("PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())


def test_prometheus_rule_needs_both_the_flag_and_the_crd() -> None:
    assert not render({"prometheusRule": {"enabled": True}}).kind("PrometheusRule")
    assert not render({}, api_versions=(MONITORING_API,)).kind("PrometheusRule")


def test_grafana_dashboard_is_a_configmap_for_the_sidecar() -> None:
    values = VALUE_SETS["monitoring"]["grafanaDashboard"]
    rendered = _all("monitoring")
    (configmap,) = [m for m in rendered.kind("ConfigMap") if m["metadata"]["name"].endswith("-dashboard")]
    assert configmap["metadata"]["labels"][values["label"]] == values["labelValue"]
    assert configmap["metadata"]["annotations"] == values["annotations"]
    (body,) = configmap["data"].values()
    assert json.loads(body) == json.loads(DASHBOARD_FILE.read_text())
    kubernetes_validate.validate(configmap, KUBE_VERSIONS[-1], strict=True)


def test_grafana_dashboard_defaults_to_the_sidecar_default_label() -> None:
    configmap = render({"grafanaDashboard": {"enabled": True}}).kind("ConfigMap")
    (dashboard,) = [m for m in configmap if m["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert len(render().kind("ConfigMap")) == 1, "off by default"


# --- extra environment and volumes ------------------------------------------------------------------------


def test_extra_env_and_volumes_reach_the_container() -> None:
    values = VALUE_SETS["proxy-and-key-file"]
    rendered = _all("proxy-and-key-file")
    env = {e["name"]: e for e in rendered.container["env"]}
    for extra in values["extraEnv"]:
        assert env[extra["name"]] == extra
    assert env["BRIDGE_AMQP_URL"]["valueFrom"]["secretKeyRef"]  # the chart's own env stays
    assert rendered.container["envFrom"][1:] == values["extraEnvFrom"]
    assert rendered.pod_spec["volumes"][1:] == values["extraVolumes"]
    assert rendered.container["volumeMounts"][1:] == values["extraVolumeMounts"]
    # The key file the daemon is told about is where the secret is mounted.
    key_file = env["BRIDGE_STATE_KEY_FILE"]["value"]
    assert key_file.startswith(values["extraVolumeMounts"][0]["mountPath"] + "/")
    Settings.model_validate({"state_key_file": key_file})


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"extraEnv": [{"value": "x"}]}, "/extraEnv/0"),
        ({"extraEnv": {"HTTPS_PROXY": "x"}}, "/extraEnv"),
        ({"extraVolumeMounts": [{"name": "a"}]}, "/extraVolumeMounts/0"),
        ({"extraVolumes": [{"secret": {}}]}, "/extraVolumes/0"),
        ({"admin": {"port": 0}}, "/admin/port"),
        ({"admin": {"enabled": True, "token": "x"}}, "'token' not allowed"),
        ({"prometheusRule": {"enabled": "yes"}}, "/prometheusRule/enabled"),
        ({"runbookBaseUrl": "https://x/runbook.md#anchor"}, "/runbookBaseUrl"),
        ({"grafanaDashboard": {"label": "not a label"}}, "/grafanaDashboard/label"),
        ({"helmTest": {"timeoutSeconds": 0}}, "/helmTest/timeoutSeconds"),
    ],
)
def test_schema_refuses_bad_new_values(values: dict[str, Any], where: str) -> None:
    with load_chart() as chart, pytest.raises(helm_python.HelmValuesError, match=re.escape(where)):
        chart.validate_schema(chart.merge_values(values))


# --- admin endpoint ---------------------------------------------------------------------------------------


def test_admin_endpoint_is_off_by_default() -> None:
    names = {e["name"] for e in render().container["env"]}
    assert not {n for n in names if n.startswith("BRIDGE_ADMIN_")}


def test_admin_endpoint_listens_on_loopback_behind_the_token() -> None:
    rendered = _all("admin")
    env = {e["name"]: e for e in rendered.container["env"]}
    assert env["BRIDGE_ADMIN_PORT"]["value"] == "9191"
    assert env["BRIDGE_ADMIN_HOST"]["value"] == "127.0.0.1"
    assert env["BRIDGE_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "bridge-admin", "key": "token"}
    # Not a container port and not in the Service: only a port-forward reaches it.
    assert {p["containerPort"] for p in rendered.container["ports"]} == {8080}
    assert [p["port"] for p in rendered.one("Service")["spec"]["ports"]] == [8080]
    settings = Settings.model_validate({"admin_port": env["BRIDGE_ADMIN_PORT"]["value"], "admin_host": "127.0.0.1"})
    assert settings.admin_port == 9191
    assert "port-forward" in rendered.notes
    assert "9191" in rendered.notes


def test_admin_endpoint_without_a_secret_has_no_token() -> None:
    env = {e["name"] for e in render({"admin": {"enabled": True}}).container["env"]}
    assert {"BRIDGE_ADMIN_PORT", "BRIDGE_ADMIN_HOST"} <= env
    assert "BRIDGE_ADMIN_TOKEN" not in env


# --- helm test ------------------------------------------------------------------------------------------


def test_helm_test_pod_asks_the_service_for_readyz() -> None:
    rendered = render()
    pod = rendered.one("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    service = rendered.one("Service")
    url = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/readyz"
    assert url in container["command"][-1]
    assert container["image"] == rendered.container["image"]
    # The Service must never route scrapes to the test pod.
    assert not service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_helm_test_pod_is_locked_down_like_the_bridge() -> None:
    rendered = render()
    pod = rendered.one("Pod")
    (container,) = pod["spec"]["containers"]
    assert pod["spec"]["securityContext"] == rendered.pod_spec["securityContext"]
    assert container["securityContext"] == rendered.container["securityContext"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert container["resources"]["limits"]["memory"]


def test_helm_test_can_be_turned_off() -> None:
    assert not _all("no-helm-test").kind("Pod")
