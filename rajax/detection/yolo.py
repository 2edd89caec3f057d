"""The Ultralytics YOLO person detector: one box per frame, the most confident person.

Import this module only in the detection worker process (``rajax.detection.worker``), never
beside TensorFlow: it imports torch, torchvision and ultralytics, and torchvision crashes the
interpreter when TensorFlow was imported first. :func:`configure_environment` must run before
the first import of ultralytics in the process.

Checkpoints are loaded so that they cannot run code: see :mod:`rajax.detection.checkpoint`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rajax.errors import RajaxError, WeightsError

DEFAULT_WEIGHTS = "yolo11n.pt"
PERSON = "person"
# Ultralytics' own default; a person found with lower confidence in some frames only shifts the
# averaged box slightly, while false positives at lower thresholds would drag it off the actor.
CONFIDENCE_THRESHOLD = 0.25


def cache_dir() -> Path:
    """Where rajax keeps downloaded detector weights and Ultralytics' settings file."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rajax"


def default_weights_path() -> Path:
    return cache_dir() / DEFAULT_WEIGHTS


def configure_environment(offline: bool) -> None:
    """Makes Ultralytics quiet, offline when asked, and keeps its settings file in rajax's cache.

    Must run before ultralytics is first imported: it reads these variables at import time.
    ``YOLO_OFFLINE`` skips its connectivity checks and with them every network call (analytics,
    update checks); ``YOLO_AUTOINSTALL=False`` stops it pip-installing packages it would like;
    ``YOLO_CONFIG_DIR`` is where it writes ``settings.json`` (a user's own setting is kept).
    ``ULTRALYTICS_SAFE_LOAD=1`` turns on its restricted checkpoint loader (``weights_only``
    unpickling of known classes only), always: a checkpoint must never be able to run code.
    """
    os.environ["YOLO_VERBOSE"] = "False"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cache_dir()))
    if offline:
        os.environ["YOLO_OFFLINE"] = "True"


def needs_download(weights: str | os.PathLike | None) -> bool:
    """True when no weights were given and the default ones are not cached yet."""
    return weights is None and not default_weights_path().is_file()


def resolve_weights(weights: str | os.PathLike | None) -> Path:
    """The local checkpoint to load: ``weights`` itself, or the default one (fetched if needed)."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"{path}: detector weights not found (--detector-weights takes a local file)")
        return path
    target = default_weights_path()
    if target.is_file():
        return target
    from ultralytics.utils import is_online
    from ultralytics.utils.downloads import attempt_download_asset

    advice = "pass --detector-weights PATH with a local Ultralytics YOLO checkpoint (e.g. yolo11n.pt)"
    if not is_online():
        raise WeightsError(f"cannot download the default detector {DEFAULT_WEIGHTS} (offline): {advice}")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        attempt_download_asset(target)
    except Exception as error:  # noqa: BLE001 - any download failure means the same to the user
        raise WeightsError(
            f"cannot download the default detector {DEFAULT_WEIGHTS} ({error}): {advice}"
        ) from None
    if not target.is_file():
        raise WeightsError(f"cannot download the default detector {DEFAULT_WEIGHTS}: {advice}")
    return target


def require_safe_loading() -> None:
    """Makes sure Ultralytics loads checkpoints with its restricted loader, or refuses to load any.

    ``configure_environment`` turns it on before the import; this also covers an ultralytics
    imported earlier in the process, and refuses an Ultralytics (or torch older than 2.6) that
    has no such loader, whose loading would run whatever a checkpoint's pickle names.
    """
    import ultralytics
    from ultralytics.nn import tasks

    safe_load = getattr(tasks, "_SafeLoad", None)
    if safe_load is None or not getattr(safe_load, "SUPPORTED", False) or not hasattr(tasks, "SAFE_LOAD"):
        import torch

        raise WeightsError(
            f"this Ultralytics ({ultralytics.__version__}) with torch {torch.__version__} cannot load a "
            f"checkpoint without letting it run code (no ULTRALYTICS_SAFE_LOAD restricted loader); "
            f"update ultralytics (8.4.190 has it) and torch (2.6 or later)"
        )
    tasks.SAFE_LOAD = True  # Read by torch_safe_load and the model builder at call time.


def _one_line(error: BaseException) -> str:
    """An Ultralytics or torch error message as one line, without Ultralytics' "ERROR ❌️" badge."""
    text = str(error).replace("ERROR ❌️", "").replace("❌", "").strip()
    return (text.splitlines() or [type(error).__name__])[0].strip()


def default_device() -> str:
    """The first CUDA GPU when torch sees one, else the CPU (Ultralytics device names)."""
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


class PersonDetector:
    """A loaded YOLO model that returns the most confident person box of each frame."""

    def __init__(self, weights: Path, device: str | None = None):
        from ultralytics import YOLO

        from rajax.detection import checkpoint

        checkpoint.check_archive(weights)  # Nothing is unpickled before these three checks pass.
        checkpoint.check_globals(weights)
        require_safe_loading()
        try:
            self.model = YOLO(str(weights))
        except Exception as error:  # noqa: BLE001 - torch and ultralytics raise many kinds here
            raise WeightsError(
                f"{weights}: cannot load as an Ultralytics YOLO checkpoint ({_one_line(error)})"
            ) from None
        names = getattr(self.model, "names", None) or {}
        if not isinstance(names, dict):
            raise WeightsError(f"{weights}: not an Ultralytics YOLO detector (it has no class names)")
        self.person_classes = [int(k) for k, name in names.items() if str(name).lower() == PERSON]
        if not self.person_classes:
            shown = ", ".join(str(name) for name in list(names.values())[:10])
            raise WeightsError(f"{weights}: the detector has no '{PERSON}' class (its classes: {shown} ...)")
        self.device = device or default_device()
        from ultralytics.utils.torch_utils import select_device

        try:  # Checked once here rather than failing on every video.
            select_device(self.device, verbose=False)
        except ValueError as error:
            first_line = str(error).strip().splitlines()[0]
            raise RajaxError(f"--device {self.device}: not usable here ({first_line})") from None
        # Half precision on CUDA for speed (not measured here: no GPU in CI); CPUs run float32.
        self.half = str(self.device).lower() not in ("cpu", "mps")

    def detect(self, frames_rgb: Sequence[np.ndarray]) -> list[tuple[list[float], float] | None]:
        """For each RGB uint8 frame, ``(xyxy box in frame pixels, confidence)`` of its most confident
        person, or None when it has none."""
        if not frames_rgb:
            return []
        # Ultralytics takes numpy images as OpenCV does: BGR.
        frames_bgr = [np.ascontiguousarray(frame[..., ::-1]) for frame in frames_rgb]
        results = self.model.predict(
            frames_bgr,
            classes=self.person_classes,
            conf=CONFIDENCE_THRESHOLD,
            device=self.device,
            half=self.half,
            verbose=False,
        )
        found: list[tuple[list[float], float] | None] = []
        for result in results:
            boxes = result.boxes
            if boxes is None or len(boxes) == 0:
                found.append(None)
                continue
            confidences = boxes.conf.float().cpu().numpy()
            best = int(np.argmax(confidences))
            box = boxes.xyxy[best].float().cpu().numpy()
            found.append(([float(v) for v in box], float(confidences[best])))
        return found
