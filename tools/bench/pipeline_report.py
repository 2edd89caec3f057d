"""The table tools/benchmark_pipeline.py prints at the end, from its results (the JSON's content)."""

from __future__ import annotations


def report(results: dict) -> str:
    cores = results["settings"]["cores"]
    least, most = min(cores), max(cores)
    lines = []
    for name, r in results["inputs"].items():
        f = r["floors"]
        lines += [
            "",
            f"{name}: {r['path']} ({r['num_frames']} frames {r['size']}, {r['bytes'] / 1e6:.2f} MB); "
            f"sample of {f['sample']['frames']} frames, canvas {results['settings']['frame_side']}",
            f"| pipeline | host CPU s/video ({most} cores) | floor (CPU s) | ratio | ratio on 1 core | "
            f"videos/s {least} core | {most} cores | speed-up (whole run) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for pipe, p in r["pipelines"].items():
            speedup, whole = p.get(f"speedup_{least}_to_{most}_cores"), p.get(f"speedup_{least}_to_{most}_cores_whole_run")
            lines.append(
                f"| {pipe} | {p['host_cpu_s']:.3f} | {p['floor']} {p['floor_cpu_s']:.3f} | {p['ratio_to_floor']:.2f}x | "
                f"{p[f'ratio_to_floor_{least}_cores']:.2f}x | "
                f"{p[f'{least}_cores']['steady_videos_per_s'] or 0:.2f} | {p[f'{most}_cores']['steady_videos_per_s'] or 0:.2f} | "
                + (f"{speedup or 0:.2f}x ({whole:.2f}x) |" if whole else "- |")
            )
        lines.append("one-thread CPU s: " + ", ".join(
            f"{key} {value['cpu_s']:.3f}" for key, value in f.items() if key != "sample"))
    budget = results["accelerator_budget"]
    lines += ["", f"Accelerator budget at {100 * budget['peak_fraction']:.0f}% of peak "
              f"({budget['flops']['training_clip'] / 1e12:.2f} TFLOP per training clip, "
              f"{budget['flops']['extraction_video'] / 1e12:.1f} per extraction video):",
              "| accelerator | device ms/training clip | host cores (breakfast file / TFDS) | "
              "device ms/extraction video | host cores (breakfast file / TFDS) |",
              "| --- | ---: | ---: | ---: | ---: |"]
    first = next(iter(results["inputs"]))
    for name, a in budget["accelerators"].items():
        c = a["host_cores_to_keep_busy"][first]
        lines.append(
            f"| {name} | {1e3 * a['device_s_per_training_clip']:.1f} | {c['training from file']:.0f} / "
            f"{c['training from TFDS']:.0f} | {1e3 * a['device_s_per_extraction_video']:.0f} | "
            f"{c['extraction from file']:.1f} / {c['extraction from TFDS']:.1f} |")
    if "training" in results:
        t = results["training"]
        lines += [
            "",
            f"Stage-1 training ({t['config']}), {t['steps']} steps of {t['batch']} clips x {t['frames']} frames "
            f"(medians after the first step): {t['seconds_per_step_median']:.2f} s per step, devices idle "
            f"{100 * t['device_idle_fraction_median']:.1f}% of the time, host waiting for input "
            f"{100 * t['input_wait_fraction_median']:.1f}%",
        ]
    lines.append("")
    lines.append(f"--video from its file: {results['host_cpu_s_per_training_clip']:.3f} host CPU s per training "
                 f"clip, {results['host_cpu_s_per_extraction_video']:.3f} per extraction video, decode floor "
                 f"{results['decode_floor_cpu_s']:.3f}")
    return "\n".join(lines)
