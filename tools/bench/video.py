"""Section ``video``: one Breakfast-sized video end to end (decode on the host; crop, resize and
features on the device, as extraction runs them)."""

from __future__ import annotations

import time

import numpy as np
import torch  # before rajax.data, which imports TensorFlow

from bench.common import relative_error, torch_device
from bench.forward import model_options
from bench.timing import stats
from bench.torch_peers import channels_last_copy


def bench_video(args, variables, torch_model, on_gpu) -> dict:
    import jax
    import jax.numpy as jnp

    from rajax.data import crops
    from rajax.data.pipeline import load_video_frames
    from rajax.data.regions import REGION_NAMES, crop_boxes
    from rajax.models.i3d import InceptionI3d
    from rajax.reference.architecture import forward_macs

    regions = REGION_NAMES[: args.video_regions]
    start = time.perf_counter()
    frames, boxes = load_video_frames(str(args.video), regions=list(regions), num_timesteps=args.video_frames // 8)
    decode_s = time.perf_counter() - start  # without a detection file the actor region is the full square

    model = InceptionI3d(num_classes=400, **model_options(args.video_variant))

    def features(variables, frames, box):
        clips = crops.region_clip(frames, box, args.video_size)[None]
        return model.apply(variables, clips, train=False, output="features")

    start = time.perf_counter()
    compiled = jax.jit(features).lower(variables, jax.ShapeDtypeStruct(frames.shape, jnp.uint8),
                                       jax.ShapeDtypeStruct((3,), jnp.int32)).compile()
    compile_s = time.perf_counter() - start
    per_region, outputs = [], []
    start_all = time.perf_counter()
    for region in range(len(regions)):
        start = time.perf_counter()
        outputs.append(np.asarray(compiled(variables, frames, boxes[region])))
        per_region.append(time.perf_counter() - start)
    network_s = time.perf_counter() - start_all
    result = {
        "video": str(args.video),
        "regions": len(regions),
        "frames": args.video_frames,
        "size": args.video_size,
        "variant": args.video_variant,
        "decode_s": decode_s,
        "compile_s": compile_s,
        "features_s": network_s,
        "per_region": stats(per_region),
        "seconds_per_video": decode_s + network_s,
        "tflops": 2 * forward_macs(args.video_frames, args.video_size, args.video_size)
        * len(regions) / network_s / 1e12,
        "feature_shape": list(np.stack(outputs).shape),
    }
    if args.video_torch and not args.no_torch:
        device = torch_device(on_gpu)
        model_t = channels_last_copy(torch_model)
        pixels = crop_boxes(frames, boxes, args.video_size, output="uint8")  # the same crops, for the peer
        times = []
        for region in range(len(regions)):
            start = time.perf_counter()
            x = torch.from_numpy(pixels[region][None]).to(device).permute(0, 4, 1, 2, 3)
            x = (x.float() / 127.5 - 1.0).contiguous(memory_format=torch.channels_last_3d)
            with torch.inference_mode():
                out = model_t(x, output="features").cpu().numpy()
            times.append(time.perf_counter() - start)
            if region == 0:
                result["torch_max_rel_diff_region0"] = relative_error(outputs[0], out)
        result["torch_channels_last_3d_features_s"] = sum(times)
        result["torch_per_region"] = stats(times)
    return result
