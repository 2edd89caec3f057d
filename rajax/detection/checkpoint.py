"""Detector checkpoints that cannot run code: what is checked before Ultralytics sees the file.

A ``.pt`` file is a pickle, and unpickling can call any function the file names: a crafted
checkpoint given as ``--detector-weights`` could run a payload the moment it is loaded. Three
layers keep that from happening:

1. :func:`check_archive` (standard library only, so it runs in any process, before the detection
   process starts): the file must be a ``.pt`` zip archive as ``torch.save`` writes it, starting
   with the zip signature that ``torch.load`` itself tests. Anything else (a plain pickle, torch's
   legacy format, a pickle with a zip appended) would be unpickled by ``torch.load`` before any
   check could refuse it, so it is refused unread. TorchScript archives are refused too.
2. :func:`check_globals` (needs torch; the detection process): lists, without unpickling, every
   function and class the archive's pickle names beyond what ``torch.load(weights_only=True)``
   allows anyway (tensors, storages, plain containers), and refuses any outside
   :func:`is_allowed_global`: the model layers of ``torch.nn`` and ``ultralytics.nn``, and the few
   data types Ultralytics checkpoints hold. These are what a real YOLO checkpoint references
   (``yolo11n-pose.pt`` names 23 of them, all layer classes and ``builtins.getattr``).
3. Ultralytics' own restricted loader (``ULTRALYTICS_SAFE_LOAD``, set by
   :func:`rajax.detection.yolo.configure_environment` and enforced by
   :func:`rajax.detection.yolo.require_safe_loading`): ``torch.load(weights_only=True)`` with an
   allow-list of known classes, a ``getattr`` limited to attributes of model classes, and models
   built without ``eval``. This also covers what the static scan of layer 2 cannot see.

Every refusal is a :class:`~rajax.errors.WeightsError` whose one-line message names the file.
"""

from __future__ import annotations

import os
import re
import sys
import zipfile
from pathlib import Path

from rajax.errors import WeightsError

# What torch.load tests to choose between its zip reader and its legacy (unpickle-first) reader.
ZIP_SIGNATURE = b"PK\x03\x04"

# Data types of Ultralytics checkpoints (training arguments, dtypes, paths) and the aliases its
# loader maps for old checkpoints; builtins.getattr pickles bound methods such as Detect.forward
# and is restricted by Ultralytics' loader to attributes of model classes.
ALLOWED_GLOBALS = frozenset({
    "builtins.getattr",
    "collections.OrderedDict",
    "numpy.dtype",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "ultralytics.utils.IterableSimpleNamespace",
    "ultralytics.yolo.utils.IterableSimpleNamespace",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
    "pathlib._local.PosixPath",
    "pathlib._local.WindowsPath",
    "ultralytics.nn.modules.block.Silence",
    "ultralytics.nn.tasks.YOLOv10DetectionModel",
    "ultralytics.utils.loss.v10DetectLoss",
})
_NUMPY_DTYPE_CLASS = re.compile(r"numpy\.dtypes\.[A-Za-z0-9]+DType")
# Modules whose torch.nn.Module subclasses a checkpoint may name (the layers of a model).
_LAYER_PACKAGES = ("torch.nn.modules.", "ultralytics.nn.modules.")
_LAYER_MODULES = frozenset({"ultralytics.nn.tasks"})
# Modules whose own classes (loss and assigner objects a training run may leave on a model) may appear.
_CLASS_MODULES = frozenset({"ultralytics.utils.loss", "ultralytics.utils.tal"})


def check_archive(path: str | os.PathLike) -> None:
    """Refuses, without unpickling anything, a file that is not a ``torch.save`` ``.pt`` archive."""
    path = Path(path)
    advice = "--detector-weights takes an Ultralytics YOLO checkpoint (.pt)"
    if path.suffix.lower() != ".pt":
        raise WeightsError(f"{path}: not a .pt file; {advice}")
    try:
        with open(path, "rb") as handle:
            start = handle.read(len(ZIP_SIGNATURE))
        if start != ZIP_SIGNATURE:
            raise WeightsError(
                f"{path}: refused: not a PyTorch zip checkpoint (a plain pickle or torch's legacy format, "
                f"which could run code when loaded); {advice}"
            )
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as error:
        raise WeightsError(f"{path}: damaged checkpoint archive ({error}); {advice}") from None
    except OSError as error:
        raise WeightsError(f"{path}: cannot read the detector weights ({error.strerror or error})") from None
    if any(name.endswith("constants.pkl") or "/code/" in name for name in names):
        raise WeightsError(f"{path}: a TorchScript archive, not a YOLO checkpoint; {advice}")
    if not any(name.count("/") == 1 and name.endswith("/data.pkl") for name in names):
        raise WeightsError(f"{path}: a zip file but not a PyTorch checkpoint; {advice}")


def is_allowed_global(name: str) -> bool:
    """Whether a checkpoint may name the global ``module.attribute`` (see the module docstring).

    Only modules already imported are looked at (the detection process imports ultralytics
    first), so a name never causes an import.
    """
    if name in ALLOWED_GLOBALS or _NUMPY_DTYPE_CLASS.fullmatch(name):
        return True
    module_name, _, attribute = name.rpartition(".")
    layers = module_name in _LAYER_MODULES or module_name.startswith(_LAYER_PACKAGES)
    if not (layers or module_name in _CLASS_MODULES) or not attribute.isidentifier():
        return False
    module = sys.modules.get(module_name)
    value = getattr(module, attribute, None) if module is not None else None
    if not isinstance(value, type):
        return False
    if layers:
        import torch

        return issubclass(value, torch.nn.Module)
    return value.__module__ == module_name


def check_globals(path: str | os.PathLike) -> None:
    """Refuses a checkpoint naming any function or class outside :func:`is_allowed_global`.

    Reads the pickle's opcodes without running them (``torch.serialization``'s static scan).
    Call :func:`check_archive` first, and only with ultralytics imported.
    """
    import torch

    path = Path(path)
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(os.fspath(path))
    except Exception as error:  # noqa: BLE001 - a damaged archive fails here in many ways
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    refused = sorted(name for name in names if not is_allowed_global(name))
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise WeightsError(
            f"{path}: refused: the checkpoint references {refused[0]}{more}, which is not part of an "
            f"Ultralytics YOLO model and could run code when loaded"
        )
