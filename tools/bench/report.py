"""The table printed at the end of a run, from the results (the JSON file's content)."""

from __future__ import annotations


def format_section(section: dict, title: str, peaks: dict) -> str:
    """One timed section (forward or train) as a table, fastest first.

    ``peaks``: the measured matmul peaks ({dtype: {'jax': TFLOP/s, 'torch': TFLOP/s}}), if run.
    """
    rows = [(f"\n{title}: batch {section['input']['batch']} x {section['input']['frames']} frames x "
             f"{section['input']['size']}^2, {section['flops_per_clip'] / 1e9:.1f} GFLOP/clip, "
             f"recompilations while timing: {section['recompilations_during_timing']}")]
    rows.append(f"{'contender':<52} {'median s':>9} {'min-max s':>15} {'clips/s':>8} {'TFLOP/s':>8} "
                f"{'of peak':>8} {'vs torch':>9}")
    for name, r in sorted(section["contenders"].items(), key=lambda kv: kv[1]["median_s"]):
        diff = r.get("max_rel_diff_vs_torch_f32")
        # The device's peak: the faster framework's matmul in this dtype.
        peak = max((v for k, v in peaks.get(r["dtype"], {}).items() if k in ("jax", "torch")), default=None)
        of_peak = f"{100 * r['tflops'] / peak:.0f}%" if peak else ""
        rows.append(
            f"{name:<52} {r['median_s']:>9.3f} {r['min_s']:>7.3f}-{r['max_s']:<7.3f} "
            f"{r['clips_per_s']:>8.3f} {r['tflops']:>8.4f} {of_peak:>8} {'' if diff is None else f'{diff:.1e}':>9}"
        )
    for dtype_name, ratio in section["ratios"].items():
        rows.append(f"  {dtype_name}: best rajax ({ratio['rajax']}) is "
                    f"{ratio['speedup_rajax_over_torch']:.2f}x the speed of best torch ({ratio['torch']})")
    return "\n".join(rows)


def report(results: dict) -> str:
    machine = results["machine"]
    lines = [(f"I3D benchmark on {machine.get('cpu_model', '')} "
              f"[{machine['backend']}: {machine['device_kind']}], {machine['cpu_cores_usable']} cores")]
    if "matmul_peak_tflops" in results:
        lines.append("measured matmul peak (TFLOP/s): " + ", ".join(
            f"{d}: jax {v['jax']:.3f} / torch {v['torch']:.3f}" for d, v in results["matmul_peak_tflops"].items()))
    peaks = results.get("matmul_peak_tflops", {})
    if "forward" in results:
        lines.append(format_section(results["forward"], "Forward (features)", peaks))
    if "train" in results:
        lines.append(format_section(results["train"], "Stage-1 training step", peaks))
    if "memory" in results:
        m = results["memory"]
        lines.append(f"\nStage-1 step at batch {m['input']['batch']} x {m['input']['frames']} frames:")
        for name, entry in m["variants"].items():
            planned = entry.get("xla_planned_peak_bytes")
            peak = entry.get("device_peak_bytes_in_use")
            lines.append(f"  {name:<24} XLA-planned {planned / 2**30 if planned else float('nan'):7.2f} GiB"
                         + (f", device peak {peak / 2**30:.2f} GiB" if peak else ""))
    if "video" in results:
        v = results["video"]
        lines.append(
            f"\nOne video end to end ({v['regions']} regions x {v['frames']} frames at {v['size']}^2, "
            f"{v['variant']}): {v['seconds_per_video']:.1f} s/video "
            f"(decode {v['decode_s']:.1f} s, crops and features {v['features_s']:.1f} s, "
            f"median {v['per_region']['median_s']:.2f} s/region, {v['tflops']:.4f} TFLOP/s; "
            f"compile {v['compile_s']:.1f} s not counted)"
            + (f"; torch {v['torch_channels_last_3d_features_s']:.1f} s features"
               if "torch_channels_last_3d_features_s" in v else "")
        )
    if "xla_flags" in results:
        lines.append("\nXLA flags (rajax forward, median s per variant, each flag in its own process):")
        for flags, entry in results["xla_flags"].items():
            lines.append(f"  {flags:<40} {entry.get('median_s', entry.get('error', '')[:120])}")
    return "\n".join(lines)
