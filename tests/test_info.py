"""``rajax info`` on this CPU: versions, JAX's backend and devices, torch's GPU, missing libraries."""

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
    assert devices["backend"] == jax.default_backend() == "cpu"
    assert devices["device_count"] == jax.device_count() == 4  # tests/conftest.py: 4 host devices
    assert devices["process_count"] == 1 and devices["process_index"] == 0
    assert [d["id"] for d in devices["devices"]] == [d.id for d in jax.local_devices()]
    assert all(d["platform"] == "cpu" and d["kind"] and d["memory_bytes"] is None for d in devices["devices"])
    assert report["torch"]["version"] == torch.__version__
    assert report["torch"]["cuda_available"] is torch.cuda.is_available() is False
    assert Path(report["rajax"]["location"]) == Path(rajax.__file__).parent


def test_info_prints_a_plain_text_report_and_never_imports_tensorflow():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", TF_CPP_MIN_LOG_LEVEL="2")
    script = ("import sys\nfrom rajax import cli\nrc = cli.main(['info'])\n"
              "print('tensorflow imported:', 'tensorflow' in sys.modules)\nsys.exit(rc)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for name in ("jax", "jaxlib", "flax", "torch", "ultralytics"):
        assert f"{name}: {importlib.metadata.version(name)}" in lines
    assert any(line.startswith("tensorflow: 2.") for line in lines)
    assert "jax backend: cpu" in lines and "jax processes: 1 (this is process 0)" in lines
    assert "jax devices: 2 (2 in this process)" in lines
    assert sum(line.startswith("  device ") and "memory unknown" in line for line in lines) == 2
    assert any(line.startswith("torch GPU: no (torch ") for line in lines)
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
    assert f"jax: {real_version('jax')}" in lines and "jax devices: 4 (4 in this process)" in lines
