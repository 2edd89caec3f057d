"""Speed and memory of rajax's I3D against an independent PyTorch I3D, in one run, on one input.

The package behind ``python tools/benchmark.py`` (see that script for how to run it).

What it measures (on whatever backend JAX finds; PyTorch on the matching device):

* forward: I3D features of a batch of clips, in clips/s and achieved TFLOP/s against the
  convolution FLOPs of the network at that input (counted from the architecture,
  rajax.reference.architecture: 2 x 111.15 GMACs per 64 x 224 x 224 clip); rajax float32 and
  bfloat16 with each optimisation option, PyTorch eager (NCTHW and channels_last_3d, float32 and
  bf16 autocast) and, on a GPU, torch.compile (channels_last_3d, bf16 autocast);
* the stage-1 training step as ``rajax train`` runs it (rajax.train.trainer.stage_steps on
  configs/base.py: Mixed_4f, Mixed_5b, Mixed_5c and a new 10-way classifier trained, everything
  below frozen with its BatchNorm moving averages; uint8 frames in), rajax and PyTorch;
* one Breakfast-sized video end to end: 11 regions x 512 frames of a real video decoded, cropped
  and resized by rajax.data, then I3D features of every region: seconds per video;
* peak device memory of a stage-1 step at batch 4 x 512 frames (CPU: XLA's memory analysis of the
  compiled step, which needs no run; GPU: the allocator's peak over real steps);
* recompilations during timed steps (must be 0), and, with --xla-flag-sweep, XLA flags'
  effects on the forward pass (each in its own process: flags are read once).

rajax variants (forward.RAJAX_VARIANTS, train.TRAIN_VARIANTS): the model's options (fuse_1x1,
fold_batch_norm, remat, bfloat16, buffer donation) and the convolution, InceptionI3d's
``conv_impl``: 'native' (one XLA 3D convolution per layer) or 'as_2d'
(rajax.models.i3d.conv3d_same_as_2d: 2D convolutions over batch x time, several times faster on
XLA:CPU); always explicit, never the model's 'auto'.

Contenders are timed round-robin (one call each, repeated), so load from other processes on a
shared machine hits them alike; medians after warm-up, with min/max. Every rajax contender's
output is compared with PyTorch's (max |diff| / max |torch|) so that no fast variant computes a
different function. Results: a JSON file (--json, default bench_results/) and a table on stdout.

Modules, one concern each:

* ``cli``: options, their defaults per mode and backend, and ``main`` running the sections;
* ``timing``: round-robin timing, the compile counter, result sections and their ratios;
* ``common``: paths, constants and small helpers shared by the sections;
* ``machine``: the machine's description and its measured matmul peak (section ``peak``);
* ``torch_peers``: the PyTorch contenders (forward, incl. torch.compile, and the stage-1 step);
* ``forward``, ``train``, ``memory``, ``video``, ``xla_flags``: one section each;
* ``report``: the table printed at the end.

The package also holds the other tools' modules: ``pipeline_*`` for tools/benchmark_pipeline.py
(the input pipeline's host cost; ``pipeline_common`` describes it) and ``device_check``,
``device_parts`` and ``device_report`` for tools/device_check.py (the accelerator check, which
reuses ``forward``, ``torch_peers``, ``train``, ``timing``, ``machine`` and ``pipeline_inputs``).

Import order: torch before anything that imports TensorFlow (rajax.data does; torchvision
segfaults when imported after it). Every module that can reach rajax.data imports torch first,
and tools/benchmark.py imports torch before this package.
"""
