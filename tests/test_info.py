"""``rajax info``: versions, JAX's backend and devices, torch's GPU, missing libraries, each against what
JAX and torch themselves say in the same process (on a CPU-only machine or one with a GPU)."""

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import torch

import rajax
from rajax import cli

PROJECT = Path(__file__).resolve().parents[1]


def test_info_json_reports_versions_and_every_jax_device(capsys):
    assert cli.main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    packages = report["packages"]
    assert packages["rajax"] == rajax.__version__
    for name in ("jax", "jaxlib", "flax", "torch", "ultralytics"):
        assert packages[name] == importlib.metadata.version(name)
    assert packages["tensorflow"].split()[0] == importlib.metadata.version(
        "tensorflow-cpu" if "tensorflow-cpu" in packages["tensorflow"] else "tensorflow")
    devices = report["jax"]
    # What JAX and torch themselves say on this machine, whichever backend and GPU it has.
    assert devices["backend"] == jax.default_backend()
    assert devices["device_count"] == jax.device_count()
    assert devices["local_device_count"] == jax.local_device_count()
    assert devices["process_count"] == jax.process_count() and devices["process_index"] == jax.process_index()
    local = jax.local_devices()
    assert [(d["id"], d["platform"], d["kind"]) for d in devices["devices"]] == [
        (d.id, d.platform, d.device_kind) for d in local]
    for entry, device in zip(devices["devices"], local):
        limit = (device.memory_stats() or {}).get("bytes_limit") if device.platform != "cpu" else None
        assert entry["memory_bytes"] == limit, entry
    assert report["torch"]["version"] == torch.__version__
    assert report["torch"]["cuda_available"] is torch.cuda.is_available()
    assert [(d["index"], d["name"]) for d in report["torch"]["devices"]] == [
        (i, torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
    assert Path(report["rajax"]["location"]) == Path(rajax.__file__).parent


def test_info_prints_a_plain_text_report_and_never_imports_tensorflow():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", TF_CPP_MIN_LOG_LEVEL="2")
    # After the report, what JAX and torch themselves say in that process (on any machine).
    script = ("import sys\nfrom rajax import cli\nrc = cli.main(['info'])\n"
              "print('tensorflow imported:', 'tensorflow' in sys.modules)\n"
              "import jax, torch\n"
              "print('SEEN', jax.default_backend(), jax.device_count(), jax.local_device_count(),"
              " ','.join(d.platform for d in jax.local_devices()), torch.cuda.is_available())\n"
              "sys.exit(rc)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    _, backend, count, local, platforms, cuda = lines[-1].split()
    lines = lines[:-1]
    for name in ("jax", "jaxlib", "flax", "torch", "ultralytics"):
        assert f"{name}: {importlib.metadata.version(name)}" in lines
    assert any(line.startswith("tensorflow: 2.") for line in lines)
    assert f"jax backend: {backend}" in lines and "jax processes: 1 (this is process 0)" in lines
    assert f"jax devices: {count} ({local} in this process)" in lines
    if os.environ.get("JAX_PLATFORMS") == "cpu":  # tests/conftest.py: the tests' JAX runs on host devices
        assert (backend, count) == ("cpu", "2")
    device_lines = [line for line in lines if line.startswith("  device ")]
    assert [line.split(", ")[0].split(": ")[1] for line in device_lines] == platforms.split(",")
    # The CPU reports no memory limit; an accelerator does.
    assert all(("memory unknown" in line) == (line.split(": ", 1)[1].startswith("cpu,")) for line in device_lines)
    seen = "yes" if cuda == "True" else "no"
    assert any(line.startswith(f"torch GPU: {seen} (torch ") for line in lines)
    assert lines[-1] == "tensorflow imported: False"


def test_info_says_not_installed_for_missing_torch_tensorflow_and_ultralytics(monkeypatch, capsys):
    missing = {"torch", "torchvision", "tensorflow", "tensorflow-cpu", "tensorflow-macos", "ultralytics"}
    real_version = importlib.metadata.version

    def version(name):
        if name in missing:
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    assert cli.main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in ("torch", "torchvision", "tensorflow", "ultralytics"):
        assert f"{name}: not installed" in lines
    assert "torch GPU: no (torch not installed)" in lines
    assert f"jax: {real_version('jax')}" in lines
    assert f"jax devices: {jax.device_count()} ({jax.local_device_count()} in this process)" in lines
