"""The way out: rajax I3D checkpoints in the formats other code reads, pytorch-i3d and DeepMind's TF.

The way back of :mod:`rajax.weights.sources`: the names come from the importers' own tables, so
that an export read back by ``rajax convert-weights`` gives every array back bit for bit.

Inputs (:func:`read_network`):

* a converted checkpoint (``rajax_i3d.json`` + ``variables/``): the Kinetics-400 default, anything
  ``rajax convert-weights`` wrote, a stage-1 fine-tuned backbone (``WORKDIR/finetune/backbone``);
* a training run (``WORKDIR/<stage>``, its ``best/`` or ``checkpoints/`` folder, or one step
  folder): the best step, else the newest. A fine-tuning run holds the I3D itself; an end-to-end
  run holds ``{backbone, head}``, and its backbone has no I3D classifier of its own.

Outputs (``FORMATS``):

* ``pytorch-i3d``: a ``.pt`` state dict with the names and layouts of piergiaj/pytorch-i3d's
  ``InceptionI3d`` (``Mixed_3b.b1b.conv3d.weight`` [out, in, t, h, w], ``bn.bias`` = Sonnet's beta,
  ``bn.weight`` = 1 because the original BatchNorm has no scale), loadable with
  ``load_state_dict(strict=True)``. The values the tensors cannot say (BatchNorm epsilon 1e-3,
  classes, width, source) are recorded in the state dict's ``_metadata[""]["rajax_export"]``,
  which ``load_state_dict`` ignores.
* ``deepmind``: a TensorFlow checkpoint (``PREFIX.index`` + ``PREFIX.data-00000-of-00001``) with
  the variable names of DeepMind's ``kinetics-i3d`` (``RGB/inception_i3d/<unit>/conv_3d/w``,
  ``batch_norm/beta|moving_mean|moving_variance`` shaped [1, 1, 1, 1, C] as Sonnet v1 makes them,
  and the checkpoint's one quirk ``Mixed_5b/Branch_2/Conv3d_0a_3x3``), read by
  ``tf.train.load_checkpoint`` and restorable by name with ``tf.compat.v1.train.Saver``.

Nothing is overwritten without ``overwrite=True``. What a target format cannot hold (a head beside
the backbone, class names, a thin width) is reported through ``warn``, never dropped silently.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from rajax.errors import WeightsError
from rajax.weights import sources, store

FORMATS = ("pytorch-i3d", "deepmind")
# Sonnet's default, which DeepMind's network and pytorch-i3d (BatchNorm3d(eps=0.001)) both use.
BN_EPSILON = 1e-3
DEEPMIND_SCOPE = "RGB/inception_i3d"
_STEM = "Conv3d_1a_7x7"  # the first unit: its absence means there is no I3D in a checkpoint

Warn = Callable[[str], None]


@dataclasses.dataclass
class Network:
    """An I3D read from a rajax checkpoint, with what the export must say about it."""

    variables: dict  # {'params', 'batch_stats'} of InceptionI3d, numpy float32, network order
    source: str  # what was read, for messages and the export's record
    class_names: list[str] | None = None
    not_exported: list[str] = dataclasses.field(default_factory=list)  # one sentence each

    @property
    def num_classes(self) -> int:
        return int(self.variables["params"]["Logits"]["Conv3d_0c_1x1"]["bias"].shape[0])

    @property
    def width_multiplier(self) -> float:
        return int(self.variables["params"][_STEM]["kernel"].shape[-1]) / 64


@dataclasses.dataclass
class Exported:
    format: str
    paths: list[Path]  # the files written
    network: Network


# --------------------------------------------------------------------------- reading rajax checkpoints


def read_network(path: str | os.PathLike | None = None) -> Network:
    """The I3D of a rajax checkpoint (default: Kinetics-400, converted on first use)."""
    if path is None:
        path = store.ensure_default_checkpoint()
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: no such checkpoint")
    if (path / store.METADATA_FILE).is_file():
        return _read_converted(path)
    state_dir = _training_state_dir(path)
    if state_dir is not None:
        return _read_training_state(state_dir, path)
    inside = [path / p for p in ("finetune/backbone", "end_to_end") if (path / p).is_dir()]
    if inside:
        raise WeightsError(f"{path}: a rajax work directory, not one checkpoint; pass one of its "
                           f"checkpoints: {', '.join(map(str, inside))}")
    raise WeightsError(
        f"{path}: not a rajax checkpoint (neither {store.METADATA_FILE} with "
        f"{store.VARIABLES_DIR}/, nor a training run's best/ or checkpoints/ step folders)"
    )


def _read_converted(path: Path) -> Network:
    variables, meta = store.load_checkpoint(path)
    variables = _checked_i3d(_numpy(variables), path)
    return Network(variables, source=f"{path} ({meta.get('source', 'rajax')})",
                   class_names=meta.get("classes"))


def _training_state_dir(path: Path) -> Path | None:
    """The ``<step>/state`` folder a training-run path designates (best step first), or None."""
    from rajax.train import checkpoints

    if not path.is_dir():
        return None
    if (path / "state").is_dir():  # one step folder
        return path / "state"
    for folder in (path, path / checkpoints.BEST_DIR, path / checkpoints.LATEST_DIR):
        steps = checkpoints.saved_steps(folder)
        if steps and (folder / str(steps[-1]) / "state").is_dir():
            return folder / str(steps[-1]) / "state"
    return None


def _run_config(state_dir: Path) -> dict:
    """The run's ``config.json`` (``RUN/<best|checkpoints>/<step>/state``), {} when absent."""
    config_file = state_dir.parents[2] / "config.json"
    try:
        return json.loads(config_file.read_text())
    except (OSError, ValueError):
        return {}


def _read_training_state(state_dir: Path, shown: Path) -> Network:
    import orbax.checkpoint as ocp

    try:
        tree = ocp.StandardCheckpointer().restore(state_dir.resolve())
    except Exception as error:  # orbax raises many kinds; all mean the same to the user
        raise WeightsError(f"{state_dir}: cannot read the training checkpoint ({error})") from error
    tree = _numpy(tree)
    params, stats = dict(tree.get("params") or {}), dict(tree.get("batch_stats") or {})
    config = _run_config(state_dir)
    source = f"{state_dir.parent} (training step {int(np.asarray(tree.get('step', -1)))})"
    not_exported: list[str] = []
    if "backbone" in params:  # an end-to-end run: RegionModel params {backbone, head}
        head = params.pop("head", None)
        params, stats = dict(params["backbone"]), dict(stats.get("backbone") or {})
        if head is not None:
            not_exported.append(_head_sentence(shown, head, config))
        if "Logits" not in params and _STEM in params:
            params["Logits"], sentence = _zero_logits(params, head, shown)
            not_exported.append(sentence)
    if _STEM not in params:
        what = ", ".join(sorted(params)) or "nothing"
        raise WeightsError(
            f"{shown}: no I3D backbone to export (missing {_STEM} ... Mixed_5c and Logits; the "
            f"checkpoint's parameters are: {what}); a head-only checkpoint (stage 3) is not an I3D"
        )
    variables = _checked_i3d({"params": params, "batch_stats": stats}, shown)
    return Network(variables, source=source, class_names=config.get("classes"),
                   not_exported=not_exported)


def _head_sentence(shown: Path, head: Mapping, config: Mapping) -> str:
    name = (config.get("head") or {}).get("name", "classification")
    count = sum(int(np.size(a)) for a in sources.flatten(head).values())
    return (f"{shown}: the {name} head beside the backbone ({count:,} values: "
            f"{', '.join(sorted(head))}) has no place in an I3D and is not exported")


def _zero_logits(params: Mapping, head: Mapping | None, shown: Path) -> tuple[dict, str]:
    """An all-zero I3D classifier for an end-to-end backbone, which was trained without one,
    and the sentence that says so.

    Both target formats need a Logits layer (pytorch-i3d's strict load, DeepMind's Saver). Zeros
    say plainly "no classifier" where a classifier taken from elsewhere would look trained.
    """
    flat_head = sources.flatten(head or {})
    biases = [a for p, a in flat_head.items() if p[-2:] == ("logits", "bias")]
    if len(biases) != 1:
        raise WeightsError(f"{shown}: an end-to-end checkpoint whose head has no single classifier "
                           "(classifier/logits/bias): cannot tell the number of classes")
    from rajax.models.i3d import feature_channels

    classes = int(np.shape(biases[0])[0])
    features = feature_channels(int(np.shape(params[_STEM]["kernel"])[-1]) / 64)
    layer = {"Conv3d_0c_1x1": {"kernel": np.zeros((1, 1, 1, features, classes), np.float32),
                               "bias": np.zeros((classes,), np.float32)}}
    return layer, (f"{shown}: an end-to-end run trains no I3D classifier (the head scores its "
                   f"{classes} classes); the exported Logits layer is all zeros: the features are "
                   "the trained network's, its logits mean nothing")


def _numpy(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {str(k): _numpy(v) for k, v in tree.items()}
    return np.asarray(tree)


def _checked_i3d(variables: Mapping, shown: Path) -> dict:
    """The variables as float32 numpy in network order, after the importers' strict check."""
    entries = (("/".join(path), path, array) for path, array in sources.flatten(variables).items())
    return sources.assemble_variables(entries, str(shown))


# --------------------------------------------------------------------------- pytorch-i3d


def _torch_names() -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """rajax unit scope -> pytorch-i3d module, and (collection, leaf) -> tensor name in the unit.

    Inverted from the importer's tables (``sources.TORCH_*``), so import and export cannot disagree.
    """
    branch_units = {scope: unit for unit, scope in sources.TORCH_BRANCH_UNITS.items()}
    leaves = {rajax: torch_name for torch_name, rajax in sources.TORCH_LEAVES.items()}
    return branch_units, leaves


def _torch_module(scope: tuple[str, ...], branch_units: Mapping[str, str]) -> str:
    if scope == ("Logits", "Conv3d_0c_1x1"):
        return "logits"
    if len(scope) == 1:
        return scope[0]
    return f"{scope[0]}.{branch_units['/'.join(scope[1:])]}"


def pytorch_state_dict(network: Network) -> "OrderedDict[str, Any]":
    """The network as a piergiaj/pytorch-i3d ``InceptionI3d`` state dict (torch tensors)."""
    import torch

    branch_units, leaves = _torch_names()
    state: OrderedDict[str, Any] = OrderedDict()
    for (collection, *scope, leaf), array in sources.flatten(network.variables).items():
        module = _torch_module(tuple(scope), branch_units)
        if leaf == "kernel":
            array = array.transpose(4, 3, 0, 1, 2)  # [t, h, w, in, out] -> [out, in, t, h, w]
        state[f"{module}.{leaves[(collection, leaf)]}"] = torch.from_numpy(np.ascontiguousarray(array))
        if leaf == "beta":
            # The original BatchNorm has no scale; PyTorch's has one: a unit gamma is exact.
            state[f"{module}.bn.weight"] = torch.ones(array.shape, dtype=torch.float32)
            state[f"{module}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    # Read by nobody's load_state_dict; there for whoever builds the model to load this into.
    state._metadata = OrderedDict({"": {"rajax_export": _record(network, "pytorch-i3d")}})
    return state


def _record(network: Network, format_name: str) -> dict:
    return {
        "format": format_name,
        "bn_epsilon": BN_EPSILON,
        "bn_scale": "unit (the original BatchNorm has none)",
        "num_classes": network.num_classes,
        "width_multiplier": network.width_multiplier,
        "class_names": network.class_names,
        "source": network.source,
    }


def _check_pytorch_output(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise WeightsError(f"{path}: is a directory; --output for pytorch-i3d is a file such as out/i3d.pt")
    if path.exists() and not overwrite:
        raise WeightsError(f"{path}: already exists (use --overwrite)")


def write_pytorch_i3d(network: Network, path: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    import torch

    from rajax.files import atomic_write

    path = Path(path)
    _check_pytorch_output(path, overwrite)
    state = pytorch_state_dict(network)
    return [atomic_write(path, lambda handle: torch.save(state, handle))]


# --------------------------------------------------------------------------- DeepMind TF checkpoint


def deepmind_variables(network: Network, scope: str = DEEPMIND_SCOPE) -> dict[str, np.ndarray]:
    """The network under DeepMind's TF variable names, in Sonnet v1's shapes."""
    sonnet = {rajax: name for name, rajax in sources.SONNET_LEAVES.items()}
    arrays = {}
    for (collection, *unit, leaf), array in sources.flatten(network.variables).items():
        unit_scope = "/".join(unit)
        unit_scope = sources.DEEPMIND_SCOPE_QUIRKS.get(unit_scope, unit_scope)
        if leaf in ("beta", "mean", "var"):
            array = array.reshape(1, 1, 1, 1, -1)  # Sonnet's BatchNorm keeps the reduced axes
        arrays[f"{scope}/{unit_scope}/{sonnet[(collection, leaf)]}"] = array
    return arrays


def _checkpoint_files(prefix: Path) -> list[Path]:
    if not prefix.parent.is_dir():
        return []
    return sorted(p for p in prefix.parent.iterdir()
                  if p.name == prefix.name + ".index" or p.name.startswith(prefix.name + ".data-"))


def _check_deepmind_output(prefix: Path, overwrite: bool) -> list[Path]:
    """The files of an existing checkpoint with this prefix (an error unless ``overwrite``)."""
    if prefix.is_dir():
        raise WeightsError(f"{prefix}: is a directory; --output for deepmind is a checkpoint prefix "
                           f"such as {prefix / 'model.ckpt'}")
    if prefix.suffix == ".index" or ".data-" in prefix.name:
        raise WeightsError(f"{prefix}: give the checkpoint prefix (e.g. out/model.ckpt), not one of its files")
    existing = _checkpoint_files(prefix)
    if existing and not overwrite:
        raise WeightsError(f"{prefix}: a checkpoint with this prefix already exists "
                           f"({existing[0].name}; use --overwrite)")
    return existing


def write_deepmind(network: Network, prefix: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    import tensorflow as tf

    prefix = Path(prefix)
    existing = _check_deepmind_output(prefix, overwrite)
    arrays = deepmind_variables(network)
    names = sorted(arrays)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{prefix.name}.", dir=prefix.parent))
    try:
        # SaveV2 writes a name-based bundle, the kind DeepMind's Saver wrote and restores from.
        tf.raw_ops.SaveV2(prefix=str(staging / "ckpt"), tensor_names=names,
                          shape_and_slices=[""] * len(names),
                          tensors=[tf.constant(arrays[name]) for name in names])
        for old in existing:  # shards of a replaced checkpoint that this one does not rewrite
            old.unlink()
        written = sorted(staging.iterdir(), key=lambda p: p.suffix == ".index")  # index last
        paths = []
        for file in written:
            target = prefix.parent / (prefix.name + file.name[len("ckpt"):])
            os.replace(file, target)
            paths.append(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return paths


# --------------------------------------------------------------------------- export


def format_limits(network: Network, format_name: str) -> list[str]:
    """What ``format_name`` cannot hold of ``network``, one sentence each."""
    limits = list(network.not_exported)
    if network.width_multiplier != 1.0:
        target = "pytorch-i3d's InceptionI3d" if format_name == "pytorch-i3d" else "DeepMind's kinetics-i3d"
        limits.append(f"a thin I3D (width multiplier {network.width_multiplier:g}): {target} builds "
                      "the full-width network; the file loads only into a model with the same "
                      "channels (rajax convert-weights reads it back)")
    if format_name == "deepmind" and network.class_names:
        names = ", ".join(network.class_names)
        limits.append(f"a TF checkpoint holds no class names; the {network.num_classes} logits are, "
                      f"in order: {names}")
    return limits


def export(format_name: str, input_path: str | os.PathLike | None, output: str | os.PathLike,
           overwrite: bool = False, warn: Warn | None = None) -> Exported:
    """Reads the I3D of ``input_path`` and writes it in ``format_name`` (one of FORMATS)."""
    if format_name not in FORMATS:
        raise WeightsError(f"unknown format {format_name!r}: choose one of {', '.join(FORMATS)}")
    if format_name == "pytorch-i3d":
        import torch  # noqa: F401  (before anything imports TensorFlow: torchvision needs it first)
    warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
    # The output first: a refusal should come before minutes of reading and any warning.
    check = _check_pytorch_output if format_name == "pytorch-i3d" else _check_deepmind_output
    check(Path(output), overwrite)
    network = read_network(input_path)
    for sentence in format_limits(network, format_name):
        warn(sentence)
    write = write_pytorch_i3d if format_name == "pytorch-i3d" else write_deepmind
    paths = write(network, output, overwrite=overwrite)
    return Exported(format_name, paths, network)
