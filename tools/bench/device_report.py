"""The markdown tables of tools/device_check.py, from its results (the JSON's content). Every
figure that a part did not produce reads as its status (skipped, error, out of memory, killed)."""

from __future__ import annotations


def _gib(value) -> str:
    return f"{value / 2**30:.2f}" if isinstance(value, (int, float)) else "-"


def _num(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def _status(entry: dict) -> str:
    status = entry.get("status", "missing")
    if status in ("ok", "missing"):
        return status
    detail = entry.get("error") or entry.get("reason") or ""
    return f"{status}: {detail[:160]}" if detail else status


def _device_line(results: dict) -> str:
    machine = results.get("jax", {}).get("machine", {})
    torch = results.get("torch", {}).get("torch", {})
    info = results.get("info", {})
    versions = info.get("packages", {})
    jax_devices = info.get("jax", {}).get("devices", [])
    cpu = machine.get("cpu_model", "")
    return (f"JAX backend **{machine.get('backend', '?')}** ({machine.get('device_kind', '?')}, "
            f"{len(jax_devices) or '?'} device(s)), torch on **{torch.get('device', '?')}**; "
            f"{machine.get('cpu_cores_usable', '?')} CPU cores{f' ({cpu})' if cpu else ''}; "
            f"rajax {versions.get('rajax', '?')}, jax {versions.get('jax', '?')}, torch {versions.get('torch', '?')}")


def _timed_rows(contenders: dict, diffs: dict | None = None) -> list[str]:
    rows = []
    ordered = sorted(contenders.items(), key=lambda kv: kv[1].get("median_s", float("inf")))
    for name, c in ordered:
        diff = ""
        if diffs is not None and c.get("framework") == "rajax":
            value = diffs.get(f"rajax {c.get('dtype')} vs torch float32")
            diff = f"{value:.1e}" if isinstance(value, (int, float)) else "-"
        memory = c.get("peak_memory_bytes") or c.get("xla_planned_peak_bytes")
        rows.append(f"| {name} | {c.get('batch', '-')} | {_num(c.get('median_s'))} | {_num(c.get('clips_per_s'), 2)} "
                    f"| {_num(c.get('tflops'), 1 if (c.get('tflops') or 0) >= 10 else 3)} | "
                    + (f"{diff or '-'} | " if diffs is not None else "")
                    + f"{_gib(memory)} | {_status(c)} |")
    return rows


def markdown(results: dict) -> str:
    check = results["check"]
    sizes = check["sizes"]
    lines = [f"# rajax device check ({check['mode']}), {check['started']}", "",
             _device_line(results) + f"; {_num(check.get('wall_s'), 0)} s of a {check['budget_s']:.0f} s budget.", ""]
    jax_part, torch_part = results.get("jax", {}), results.get("torch", {})
    diffs = results.get("features_max_rel_diff", {})

    forward = jax_part.get("forward", {})
    contenders = dict(forward.get("contenders", {}))
    contenders |= torch_part.get("forward", {}).get("contenders", {})
    gflop = (forward.get("flops_per_clip") or 0) / 1e9
    lines += [f"## I3D forward: features of {sizes['frames']}-frame clips at {sizes['size']}x{sizes['size']} "
              f"({gflop:.1f} GFLOP per clip), the largest batch that fits", "",
              "| contender | batch | s/call | clips/s | TFLOP/s | max rel. diff vs PyTorch f32 | memory GiB | status |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    lines += _timed_rows(contenders, diffs) or ["| (no contender ran) | | | | | | | |"]
    for part_name, part in (("rajax", forward), ("PyTorch", torch_part.get("forward", {}))):
        if part.get("status") not in (None, "ok"):
            lines.append(f"\n{part_name} forward: {_status(part)}")
    search = forward.get("batch_search", {})
    if search:
        plan = search.get("plan_batch_1", {}).get("xla_planned_peak_bytes")
        how = (f"estimated {search.get('estimate')} from XLA's memory plan at batch 1 ({_gib(plan)} GiB) and the "
               "device's free memory" if plan else f"{search.get('estimate')}, the cap (no device memory statistics)")
        lines.append(f"\nBatch: {how}; {len(search.get('failed_attempts', []))} attempt(s) ran out of memory or "
                     "failed. Memory: the allocator's peak (PyTorch) or XLA's plan of the compiled program (rajax).")

    train = jax_part.get("train", {})
    contenders = dict(train.get("contenders", {})) | torch_part.get("train", {}).get("contenders", {})
    lines += ["", f"## Stage-1 training step: batch {sizes['train_batch']} x {sizes['train_frames']} frames at "
                  f"{sizes['train_size']}x{sizes['train_size']}", "",
              "| contender | batch | s/step | clips/s | TFLOP/s | memory GiB | status |",
              "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    lines += _timed_rows(contenders) or ["| (no contender ran) | | | | | | |"]

    extraction = jax_part.get("extraction", {})
    lines += ["", f"## 11-region extraction of one Breakfast-format video ({sizes['timesteps']} x "
                  f"{sizes['timestep_length']} frames, regions at {sizes['crop']})", "",
              "| decode s (host) | features s (device) | s/video | videos/s the device takes | compile s | "
              "memory GiB | status |", "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
              f"| {_num(extraction.get('decode_s'))} | {_num(extraction.get('features_s'))} | "
              f"{_num(extraction.get('seconds_per_video'))} | {_num(extraction.get('device_videos_per_s'), 2)} | "
              f"{_num(extraction.get('compile_s'), 1)} | {_gib(extraction.get('xla_planned_peak_bytes'))} | "
              f"{_status(extraction)} |"]

    pipeline = results.get("pipeline", {})
    against = results.get("pipeline_against_device", {})
    counts = sorted({int(key.split()[1]) for key in pipeline if key.startswith(("training ", "extraction "))})
    lines += ["", f"## Input pipeline: videos/s after the first batch ({pipeline.get('videos', '?')} videos, "
                  f"{pipeline.get('cores', '?')} cores), against what the device takes", "",
              "| pipeline | " + " | ".join(f"{n} decoder process{'es' if n > 1 else ''}" for n in counts)
              + " | device takes /s |", "| --- |" + " ---: |" * (len(counts) + 1)]
    for kind, device_key in (("training", "training_clips_per_s"), ("extraction", "extraction_videos_per_s")):
        cells = []
        for n in counts:
            entry = pipeline.get(f"{kind} {n} processes", {})
            rate = entry.get("steady_videos_per_s") or entry.get("videos_per_s")
            ratio = against.get(f"{kind} {n} processes: pipeline over device")
            cells.append(f"{_num(rate, 2)}" + (f" ({ratio:.1f}x)" if ratio else "") if entry.get("status") == "ok"
                         else _status(entry))
        lines.append(f"| {kind} | " + " | ".join(cells) + f" | {_num(against.get(device_key), 2)} |")
    lines.append("\n(x): the pipeline's rate over the device's; below 1 the device waits for input.")

    memory = jax_part.get("device_memory", {})
    torch_peaks = [c.get("peak_memory_bytes") for section in ("forward", "train")
                   for c in torch_part.get(section, {}).get("contenders", {}).values() if c.get("peak_memory_bytes")]
    lines += ["", "## Peak device memory", "",
              f"JAX: {_gib(memory.get('peak_bytes_in_use'))} GiB peak of {_gib(memory.get('bytes_limit'))} GiB "
              f"(allocator statistics; none on a CPU); PyTorch: {_gib(max(torch_peaks) if torch_peaks else None)} GiB "
              "(max_memory_allocated)."]

    lines += ["", "## Parts", "", "| part | ended | wall s | limit s |", "| --- | --- | ---: | ---: |"]
    info = results.get("info", {})
    if info:
        lines.append(f"| info | {info.get('status')} | {_num(info.get('wall_s'), 1)} | |")
    for name in ("jax", "torch", "pipeline"):
        process = results.get(name, {}).get("process")
        if process:
            lines.append(f"| {name} | {process['ended']} | {process['wall_s']:.1f} | {process['limit_s']:.0f} |")
    return "\n".join(lines) + "\n"
