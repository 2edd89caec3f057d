"""Evaluation results: accuracy, per-class accuracy, confusion matrix (and its PNG), mean attention.

Inputs are the per-example outputs of ``eval_step`` gathered on the host, with the padding rows
(mask 0) already dropped, so every example counts exactly once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rajax.files import atomic_savefig, atomic_write_text


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``[true, predicted]`` counts."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
    return matrix


def summarize(
    outputs: dict[str, np.ndarray],
    class_names: Sequence[str],
    region_names: Sequence[str] | None = None,
) -> dict:
    """The evaluation report of one split as plain JSON-able values.

    ``outputs``: ``logits`` [n, K], ``label`` [n], ``loss`` [n] and optionally
    ``attention/region_weight`` [n, R]. Per-class accuracy is the recall of each class (correct /
    examples of that class; None for a class with no example); ``mean_class_accuracy`` averages it
    over the classes present.
    """
    labels = np.asarray(outputs["label"], np.int64)
    predictions = np.argmax(outputs["logits"], axis=-1)
    num_classes = len(class_names)
    matrix = confusion_matrix(labels, predictions, num_classes)
    per_class_total = matrix.sum(axis=1)
    per_class = {
        name: (float(matrix[k, k] / per_class_total[k]) if per_class_total[k] else None)
        for k, name in enumerate(class_names)
    }
    present = [value for value in per_class.values() if value is not None]
    report = {
        "num_examples": int(len(labels)),
        "accuracy": float(np.mean(predictions == labels)) if len(labels) else 0.0,
        "loss": float(np.mean(outputs["loss"])) if len(labels) else 0.0,
        "per_class_accuracy": per_class,
        "mean_class_accuracy": float(np.mean(present)) if present else 0.0,
        "confusion_matrix": matrix.tolist(),
        "class_names": list(class_names),
        # Per example, in the order the split was batched: what the numbers above are computed from.
        "labels": labels.tolist(),
        "predictions": predictions.tolist(),
    }
    weights = outputs.get("attention/region_weight")
    if weights is not None and len(labels):
        names = list(region_names) if region_names else [str(i) for i in range(weights.shape[-1])]
        mean = np.mean(weights, axis=0)
        report["mean_region_attention"] = {name: float(w) for name, w in zip(names, mean)}
        scores = outputs.get("attention/region_score")
        if scores is not None:
            report["mean_region_score"] = {name: float(s) for name, s in zip(names, np.mean(scores, 0))}
    return report


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike,
                          title: str = "") -> None:
    """Rows: true class, columns: predicted; each cell shaded by the fraction of its row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    rows = np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.55 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(matrix / rows, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            dark = matrix[i, j] / rows[i, 0] > 0.5
            axes.text(j, i, str(count), ha="center", va="center", fontsize=8,
                      color="white" if dark else "black")
    figure.colorbar(image, ax=axes, fraction=0.046, label="fraction of the true class")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    atomic_savefig(figure, path, dpi=120)
    plt.close(figure)


def write_report(report: dict, directory: str | os.PathLike, name: str,
                 picture: bool = True) -> tuple[Path, Path | None]:
    """Writes ``name.json`` and (with ``picture``) ``name_confusion.png`` into ``directory``
    (atomically); their paths. Drawing costs far more than the JSON: the trainer draws a
    validation report once, at the end, not at every improvement."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{name}.json"
    atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
    return json_path, draw_report(report, directory, name) if picture else None


def draw_report(report: dict, directory: str | os.PathLike, name: str) -> Path:
    """``name_confusion.png`` of a report in ``directory``."""
    png_path = Path(directory) / f"{name}_confusion.png"
    title = f"{name}: accuracy {100 * report['accuracy']:.2f}% ({report['num_examples']} videos)"
    plot_confusion_matrix(np.array(report["confusion_matrix"]), report["class_names"], png_path, title)
    return png_path


def format_report(report: dict) -> str:
    """A few readable lines for the terminal."""
    lines = [f"accuracy {100 * report['accuracy']:.2f}% on {report['num_examples']} videos "
             f"(mean class accuracy {100 * report['mean_class_accuracy']:.2f}%, loss {report['loss']:.4f})"]
    per_class = ", ".join(f"{name} {100 * value:.1f}" for name, value in report["per_class_accuracy"].items()
                          if value is not None)
    lines.append(f"per class: {per_class}")
    if "mean_region_attention" in report:
        regions = ", ".join(f"{name} {value:.3f}" for name, value in report["mean_region_attention"].items())
        lines.append(f"mean attention per region: {regions}")
    return "\n".join(lines)
