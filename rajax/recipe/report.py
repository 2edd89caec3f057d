"""What the recipe measured, as figures: intervals, the results table, JSON values.

The test accuracy of a few dozen clips moves in steps of a few percent, so every accuracy comes
with a 95 % interval: the percentile bootstrap over the test clips (resampled with replacement,
each resample's accuracy, the 2.5th and 97.5th percentiles). The fine-tuned backbone's gain over
the Kinetics one is paired (the same clips resampled for both): far narrower than the two
intervals side by side suggest. Cross-validation figures are the mean
of the folds' accuracies and its standard error (spread of the folds, ddof 1, over sqrt(folds)).
"""

from __future__ import annotations

import numpy as np



def bootstrap_interval(correct, samples: int, seed: int, level: float = 0.95) -> tuple[float, float] | None:
    """The percentile-bootstrap interval of the mean of ``correct`` (1 per right clip, 0 per wrong
    one); None without clips or samples."""
    correct = np.asarray(correct, np.float64)
    if correct.size == 0 or samples < 1:
        return None
    rng = np.random.default_rng([seed, 0xB007])
    means = rng.choice(correct, size=(samples, correct.size), replace=True).mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_difference_interval(correct, baseline, samples: int, seed: int,
                               level: float = 0.95) -> tuple[float, float] | None:
    """The percentile-bootstrap interval of ``mean(correct) - mean(baseline)`` over the same clips,
    resampled together (a paired comparison: two backbones on one test set); None without clips."""
    correct, baseline = np.asarray(correct, np.float64), np.asarray(baseline, np.float64)
    if correct.size == 0 or correct.shape != baseline.shape or samples < 1:
        return None
    rng = np.random.default_rng([seed, 0xD1FF])
    picks = rng.integers(0, correct.size, size=(samples, correct.size))
    differences = correct[picks].mean(axis=1) - baseline[picks].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(differences, [tail, 100 - tail])
    return float(low), float(high)


def fold_statistics(accuracies) -> dict:
    """Mean and standard error of cross-validation fold accuracies."""
    accuracies = np.asarray(accuracies, np.float64)
    return {"mean": float(accuracies.mean()),
            "standard_error": float(accuracies.std(ddof=1) / np.sqrt(len(accuracies)))}


def _percent(value) -> str:
    return f"{100 * value:.1f}%" if value is not None else "-"


def results_table(results: dict[str, dict], rows: list[str], titles: dict[str, str], test_videos: int,
                  chance: float, cv_folds: int, cv_videos: int) -> str:
    """Table 3 in miniature: each row's held-out test accuracy (95 % interval) on each backbone, the
    fine-tuned backbone's paired gain, and the Kinetics features' grouped cross-validation."""
    def cell(result: dict | None) -> str:
        if result is None:
            return "not run"
        interval = result.get("test_accuracy_ci95")
        ci = f" [{100 * interval[0]:.0f}-{100 * interval[1]:.0f}]" if interval else ""
        return _percent(result["test_accuracy"]) + ci

    def gain(result: dict | None) -> str:
        if not result or result.get("gain_over_kinetics") is None:
            return "-"
        low, high = result["gain_over_kinetics_ci95"]
        return f"{100 * result['gain_over_kinetics']:+.1f} [{100 * low:+.0f}, {100 * high:+.0f}]"

    columns = ["Kinetics-400 I3D", "fine-tuned I3D", "gain (paired)"]
    cells = {row: [cell(results.get(f"kinetics/{row}")), cell(results.get(f"finetuned/{row}")),
                   gain(results.get(f"finetuned/{row}"))] for row in rows}
    if cv_folds:
        columns.append(f"Kinetics, {cv_folds}-fold grouped CV of {cv_videos}")
        for row in rows:
            kinetics = results.get(f"kinetics/{row}") or {}
            cells[row].append(f"{_percent(kinetics['cv_accuracy_mean'])} +- {100 * kinetics['cv_accuracy_se']:.1f}"
                              if kinetics.get("cv_accuracy_mean") is not None else "-")
    width = max(len(titles[row]) for row in rows)
    widths = [max(len(columns[i]), *(len(c[i]) for c in cells.values())) for i in range(len(columns))]
    header = f"{'':<{width}}   " + "   ".join(f"{columns[i]:>{widths[i]}}" for i in range(len(columns)))
    lines = [f"held-out test accuracy on {test_videos} videos [95% interval] (chance {100 * chance:.0f}%)",
             header, "-" * len(header)]
    for row in rows:
        lines.append(f"{titles[row]:<{width}}   " + "   ".join(f"{cells[row][i]:>{widths[i]}}"
                                                               for i in range(len(columns))))
    return "\n".join(lines)


def json_default(value):
    """NumPy scalars and arrays as JSON values (``json.dumps(..., default=json_default)``)."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value)}")
