"""``rajax info``: what to paste into a bug report: versions, JAX's backend and devices, torch's GPU.

Versions come from the installed distributions' metadata, so a library that fails to import still
shows its version, and TensorFlow and Ultralytics are never imported (nothing here needs them).
torch is imported before anything else that could import TensorFlow: torchvision crashes the
process when it is imported after TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

HELP = "print versions (rajax, JAX, Flax, TensorFlow, torch, Ultralytics), JAX's devices and torch's GPU, for a bug report"

# (shown name, distributions that provide it): the first one installed is reported.
PACKAGES = (
    ("rajax", ("rajax",)),
    ("jax", ("jax",)),
    ("jaxlib", ("jaxlib",)),
    ("jax-cuda12-plugin", ("jax-cuda12-plugin",)),
    ("jax-cuda13-plugin", ("jax-cuda13-plugin",)),
    ("libtpu", ("libtpu",)),
    ("flax", ("flax",)),
    ("optax", ("optax",)),
    ("orbax-checkpoint", ("orbax-checkpoint",)),
    ("tensorflow", ("tensorflow", "tensorflow-cpu", "tensorflow-macos")),
    ("tensorflow-datasets", ("tensorflow-datasets",)),
    ("torch", ("torch",)),
    ("torchvision", ("torchvision",)),
    ("ultralytics", ("ultralytics",)),
)
# Accelerator plugins are listed only when installed (most machines have none of them).
OPTIONAL = {"jax-cuda12-plugin", "jax-cuda13-plugin", "libtpu"}
NOT_INSTALLED = "not installed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def distribution_version(names: tuple[str, ...]) -> str | None:
    """``VERSION`` of the first installed distribution of ``names`` (``VERSION (name)`` when it is
    not the first, e.g. tensorflow-cpu), or None when none is installed."""
    from importlib import metadata

    for name in names:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        return version if name == names[0] else f"{version} ({name})"
    return None


def package_versions() -> dict[str, str | None]:
    return {shown: distribution_version(names) for shown, names in PACKAGES}


def torch_report() -> dict | None:
    """Whether torch sees a CUDA GPU (None: torch is not installed). Imports torch."""
    try:
        import torch
    except ImportError:
        return None
    except Exception as error:  # a broken install: say so rather than fail the whole report
        return {"error": f"import torch: {type(error).__name__}: {error}"}
    report = {"version": torch.__version__, "cuda_build": torch.version.cuda, "cuda_available": False,
              "devices": []}
    try:
        report["cuda_available"] = bool(torch.cuda.is_available())
        for index in range(torch.cuda.device_count() if report["cuda_available"] else 0):
            properties = torch.cuda.get_device_properties(index)
            report["devices"].append({"index": index, "name": properties.name,
                                      "memory_bytes": int(properties.total_memory)})
    except Exception as error:
        report["error"] = f"{type(error).__name__}: {error}"
    return report


def device_memory(device) -> int | None:
    """The memory JAX may use on ``device`` in bytes, where the backend says (not on the CPU)."""
    try:
        stats = device.memory_stats()
    except Exception:
        return None
    limit = (stats or {}).get("bytes_limit")
    return int(limit) if limit is not None else None


def jax_report() -> dict:
    """JAX's backend, processes and devices (the local ones listed). Imports JAX."""
    try:
        import jax

        devices = jax.devices()
        local = jax.local_devices()
        return {
            "backend": jax.default_backend(),
            "process_count": jax.process_count(),
            "process_index": jax.process_index(),
            "device_count": len(devices),
            "local_device_count": len(local),
            "devices": [{"id": d.id, "platform": d.platform, "kind": d.device_kind,
                         "memory_bytes": device_memory(d)} for d in local],
        }
    except Exception as error:  # no backend could start (e.g. JAX_PLATFORMS names a missing one)
        return {"error": f"{type(error).__name__}: {error}"}


def collect() -> dict:
    """The whole report. torch is looked at before JAX, and TensorFlow is never imported."""
    import rajax
    from rajax.train.config import CONFIGS_DIR

    torch = torch_report()
    return {
        "rajax": {"version": rajax.__version__, "location": str(Path(rajax.__file__).parent),
                  "configs": str(CONFIGS_DIR)},
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "packages": package_versions(),
        "jax": jax_report(),
        "torch": torch,
    }


def _gib(size: int | None) -> str:
    return "memory unknown" if size is None else f"{size / 2**30:.1f} GiB"


def format_report(report: dict) -> str:
    """The report as plain text, one ``name: value`` line per fact."""
    lines = [f"rajax: {report['rajax']['version']} ({report['rajax']['location']})",
             f"configs: {report['rajax']['configs']}",
             f"python: {report['python']}",
             f"platform: {report['platform']}"]
    for name, version in report["packages"].items():
        if name == "rajax" or (version is None and name in OPTIONAL):
            continue
        lines.append(f"{name}: {version or NOT_INSTALLED}")
    jax = report["jax"]
    if "error" in jax:
        lines.append(f"jax backend: error: {jax['error']}")
    else:
        lines.append(f"jax backend: {jax['backend']}")
        lines.append(f"jax processes: {jax['process_count']} (this is process {jax['process_index']})")
        lines.append(f"jax devices: {jax['device_count']} ({jax['local_device_count']} in this process)")
        for device in jax["devices"]:
            lines.append(f"  device {device['id']}: {device['platform']}, {device['kind']}, "
                         f"{_gib(device['memory_bytes'])}")
    torch = report["torch"]
    if torch is None:
        lines.append(f"torch GPU: no (torch {NOT_INSTALLED})")
    elif "version" not in torch:
        lines.append(f"torch GPU: unknown ({torch['error']})")
    else:
        build = f"built for CUDA {torch['cuda_build']}" if torch["cuda_build"] else "CPU-only build"
        seen = f"yes, {len(torch['devices'])} device(s)" if torch["cuda_available"] else "no"
        lines.append(f"torch GPU: {seen} (torch {torch['version']}, {build})")
        for device in torch["devices"]:
            lines.append(f"  cuda:{device['index']}: {device['name']}, {_gib(device['memory_bytes'])}")
        if "error" in torch:
            lines.append(f"  error: {torch['error']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    report = collect()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 1 if "error" in report["jax"] else 0
