"""deploy/k8s and deploy/flink: every Kubernetes object valid against the schema of a current
Kubernetes release (kubernetes-validate, offline: it ships the schemas), every volume defined, the
CronJob's pod admitted by a namespace enforcing the "restricted" Pod Security Standard, and its
podFailurePolicy the CLI's real exit codes (neural_ingest/exit_codes.py)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from support import ROOT

from neural_ingest import exit_codes

try:
    from kubernetes_validate import utils as kv
except ImportError:  # the test extra has it; under CI=true its absence is a failure, not a skip
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("pip install kubernetes-validate (the test extra)", allow_module_level=True)

K8S_VERSION = "1.35.0"  # a current release (kubernetes-validate also has newer schemas)
CRONJOB = ROOT / "deploy" / "k8s" / "cronjob.yaml"
FLINK = ROOT / "deploy" / "flink" / "kubernetes.yaml"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _pod_specs(doc: dict) -> list[dict]:
    """The pod specs an object runs (CronJob, Deployment; a FlinkDeployment's pod templates)."""
    kind = doc["kind"]
    if kind == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    if kind in ("Deployment", "Job", "StatefulSet"):
        return [doc["spec"]["template"]["spec"]]
    if kind == "FlinkDeployment":
        return [
            doc["spec"][r]["podTemplate"]["spec"]
            for r in ("jobManager", "taskManager")
            if "podTemplate" in doc["spec"].get(r, {})
        ]
    return []


@pytest.mark.parametrize("path", [CRONJOB, FLINK], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_schema(path):
    """Strict: an unknown field (a typo the API server would drop) fails too. The Flink operator's
    FlinkDeployment has no schema there: its pod templates are checked as the Pods they become."""
    for doc in _docs(path):
        if doc["kind"] == "FlinkDeployment":
            for spec in _pod_specs(doc):
                kv.validate(
                    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "template"}, "spec": spec}, K8S_VERSION, strict=True
                )
            continue
        assert kv.validate(doc, K8S_VERSION, strict=True), f"{path.name}: {doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("path", [CRONJOB, FLINK], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_volume_is_defined(path):
    """A PVC or ConfigMap a pod mounts is in the file, or its header says how to create it (Secrets)."""
    docs = _docs(path)
    header = path.read_text().split("\napiVersion:", 1)[0]
    defined = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for doc in docs:
        for spec in _pod_specs(doc):
            for v in spec.get("volumes", []):
                if "persistentVolumeClaim" in v:
                    assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in defined, v
                elif "configMap" in v:
                    assert ("ConfigMap", v["configMap"]["name"]) in defined, v
                elif "secret" in v:
                    assert f"kubectl create secret generic {v['secret']['secretName']} " in header, v
                else:
                    assert "emptyDir" in v, v
            for c in spec["containers"]:
                names = {v["name"] for v in spec.get("volumes", [])}
                assert {m["name"] for m in c.get("volumeMounts", [])} <= names


def _cronjob() -> tuple[dict, dict, dict]:
    docs = {d["kind"]: d for d in _docs(CRONJOB)}
    job = docs["CronJob"]["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    return docs, job, pod


def test_restricted_pod_security_standard():
    """What a namespace labelled pod-security.kubernetes.io/enforce=restricted requires of every container."""
    _, _, pod = _cronjob()
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()  # the image's own user and group
    assert (
        f"--uid {psc['runAsUser']} --gid {psc['runAsGroup']}" in dockerfile
        and f"USER {psc['runAsUser']}:{psc['runAsGroup']}" in dockerfile
    )
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
        assert sc.get("privileged") is not True and sc.get("runAsUser", 1) != 0
        assert sc["readOnlyRootFilesystem"] is True
        # every path the run writes is a volume: /tmp, the caches, the working directory, the data
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        env = {e["name"]: e.get("value") for e in c["env"]}
        writable = {p for p, m in mounts.items() if not m.get("readOnly")}
        assert {"/tmp", "/work", "/data"} <= writable
        assert env["HF_HOME"].startswith(tuple(p + "/" for p in writable))
        assert any(env["HOME"] + "/.cache" == p for p in writable)
    volumes = {v["name"]: v for v in pod["volumes"]}
    for kind in ("hostPath",):
        assert not any(kind in v for v in volumes.values())


def test_https_ca_is_mounted():
    """The config talks https: the CA bundle its sink.ca_certs names is mounted from a Secret."""
    docs, _, pod = _cronjob()
    (c,) = pod["containers"]
    sink = yaml.safe_load(docs["ConfigMap"]["data"]["reindex.yaml"])["sink"]
    url = next(e["value"] for e in c["env"] if e["name"] == "OPENSEARCH_URL")
    assert url.startswith("https://") and sink["hosts"] == ["${OPENSEARCH_URL}"]
    ca = Path(sink["ca_certs"])
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == str(ca.parent))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert ca.name in [i["path"] for i in volume["secret"].get("items", [])] or not volume["secret"].get("items")
    # a mount inside another (read-only) mount would need a directory the kubelet cannot create
    paths = [m["mountPath"] for m in c["volumeMounts"]]
    assert not [(a, b) for a in paths for b in paths if a != b and b.startswith(a + "/")]


def test_pod_failure_policy_matches_exit_codes():
    """2 (config/model/cluster), 4 (validation failed) and 5 (locked) fail the Job at once; 1 and kills
    are retried; a disruption (node drain, preemption) is not counted."""
    _, job, pod = _cronjob()
    assert pod["restartPolicy"] == "Never" and job["backoffLimit"] >= 1
    (c,) = pod["containers"]
    fail_now: set[int] = set()
    for rule in job["podFailurePolicy"]["rules"]:
        on = rule.get("onExitCodes")
        if on:
            assert on["containerName"] == c["name"] and on["operator"] == "In"
            assert rule["action"] == "FailJob"
            fail_now |= set(on["values"])
    assert fail_now == {exit_codes.USER, exit_codes.VALIDATION, exit_codes.LOCKED}
    assert {exit_codes.INTERNAL, 137, 143}.isdisjoint(fail_now)
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]} in job["podFailurePolicy"]["rules"]


def test_flink_artifacts_are_shared():
    """The job server's --artifacts-dir is a volume the taskmanagers mount at the same path (they read the
    staged artifacts from there; a directory local to the job server pod fails every job)."""
    docs = {d["kind"]: d for d in _docs(FLINK)}
    server = docs["Deployment"]["spec"]["template"]["spec"]
    (js,) = server["containers"]
    artifacts = next(a.split("=", 1)[1] for a in js["args"] if a.startswith("--artifacts-dir="))
    claim = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in server["volumes"] if "persistentVolumeClaim" in v}
    mount = next(m for m in js["volumeMounts"] if artifacts == m["mountPath"] or artifacts.startswith(m["mountPath"] + "/"))
    tm = docs["FlinkDeployment"]["spec"]["taskManager"]["podTemplate"]["spec"]
    tm_claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in tm["volumes"] if "persistentVolumeClaim" in v}
    main = next(c for c in tm["containers"] if c["name"] == "flink-main-container")
    assert any(
        m["mountPath"] == mount["mountPath"] and tm_claims[m["name"]] == claim[mount["name"]] for m in main["volumeMounts"]
    )
    pvc = next(d for d in _docs(FLINK) if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim[mount["name"]])
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
