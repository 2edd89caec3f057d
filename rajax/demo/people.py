"""The demo's actor: two people cut out of a real photograph that Ultralytics ships (``bus.jpg``).

The two people standing on the left of ``bus.jpg`` were located once, offline, with the YOLO11n-pose
model (their boxes and 17 COCO keypoints are the constants in ``PEOPLE``); GrabCut, seeded with
their skeletons, cuts them out of the photograph at run time. A real person detector therefore
finds them in the generated videos (``rajax.demo.generate``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rajax.errors import RajaxError


@dataclasses.dataclass(frozen=True)
class PersonInPhoto:
    """A person in one of Ultralytics' sample photographs, as YOLO11n-pose found them."""

    name: str
    image: str  # file name in the ultralytics package's assets/ folder
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the photograph's pixels
    keypoints: tuple[tuple[int, int], ...]  # 17 COCO keypoints (x, y): nose, eyes, ears, shoulders ...


# Found once with `YOLO("yolo11n-pose.pt").predict("bus.jpg")` (box confidences 0.887 and 0.878),
# rounded to whole pixels. The two boxes overlap; each person's skeleton marks the other as
# background when cutting out.
PEOPLE = (
    PersonInPhoto(
        "man_in_beige_coat", "bus.jpg", (48, 400, 244, 906),
        ((142, 442), (148, 431), (131, 433), (152, 438), (107, 441), (157, 493), (94, 499),
         (176, 551), (111, 568), (174, 532), (162, 534), (149, 645), (100, 649), (179, 749),
         (95, 757), (186, 850), (74, 858)),
    ),
    PersonInPhoto(
        "man_in_black_coat", "bus.jpg", (223, 405, 344, 859),
        ((293, 451), (298, 442), (283, 443), (304, 446), (265, 449), (318, 495), (251, 499),
         (329, 554), (251, 575), (279, 535), (252, 616), (303, 630), (259, 630), (301, 724),
         (261, 718), (288, 806), (261, 805)),
    ),
)

# Skeleton of COCO keypoints: arms, legs, shoulders, hips, sides of the torso.
_LIMBS = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6), (11, 12),
          (5, 11), (6, 12))


def ultralytics_assets_dir() -> Path:
    """The ``assets`` folder of the installed ultralytics package, found without importing it
    (importing ultralytics imports torch, which this process must not need)."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise RajaxError("the demo builds its actor from photographs that the ultralytics package ships, "
                         "and ultralytics is not installed (pip install 'rajax[detect]')")
    folder = Path(next(iter(spec.submodule_search_locations))) / "assets"
    if not folder.is_dir():
        raise RajaxError(f"{folder}: the ultralytics package has no assets folder")
    return folder


def _draw_skeleton(mask: np.ndarray, keypoints, value: int, width: int, offset: tuple[int, int]) -> None:
    import cv2

    points = [(int(x - offset[0]), int(y - offset[1])) for x, y in keypoints]
    for i, j in _LIMBS:
        cv2.line(mask, points[i], points[j], value, max(width, 1))
    cv2.fillPoly(mask, [np.array([points[5], points[6], points[12], points[11]], np.int32)], value)
    cv2.circle(mask, points[0], max(width, 1), value, -1)


def _toward(a, b, fraction: float) -> tuple[int, int]:
    return int(a[0] + fraction * (b[0] - a[0])), int(a[1] + fraction * (b[1] - a[1]))


def cut_out_person(photo: np.ndarray, person: PersonInPhoto, others: Sequence[PersonInPhoto] = ()) -> np.ndarray:
    """The person as an RGBA sprite ``uint8 [h, w, 4]``, cropped to the person.

    GrabCut (OpenCV) separates person from background inside the detector's box. It is seeded
    with the skeleton: thick limbs are "probably the person", thin ones "surely the person", the gap
    between the legs and the other people's skeletons "surely background".
    """
    import cv2

    x0, y0, x1, y1 = person.box
    pad = 12
    left, top = max(0, x0 - pad), max(0, y0 - pad)
    right, bottom = min(photo.shape[1], x1 + pad), min(photo.shape[0], y1 + pad)
    crop = np.ascontiguousarray(photo[top:bottom, left:right])
    mask = np.full(crop.shape[:2], cv2.GC_BGD, np.uint8)
    mask[y0 - top:y1 - top, x0 - left:x1 - left] = cv2.GC_PR_BGD
    width = x1 - x0
    _draw_skeleton(mask, person.keypoints, cv2.GC_PR_FGD, int(0.30 * width), (left, top))
    for other in others:
        _draw_skeleton(mask, other.keypoints, cv2.GC_BGD, int(0.12 * width), (left, top))
    k = [(x - left, y - top) for x, y in person.keypoints]
    hips = ((k[11][0] + k[12][0]) // 2, (k[11][1] + k[12][1]) // 2)
    knees = ((k[13][0] + k[14][0]) // 2, (k[13][1] + k[14][1]) // 2)
    between_legs = [_toward(hips, knees, 0.45), _toward(k[13], k[14], 0.3), _toward(k[15], k[16], 0.3),
                    _toward(k[16], k[15], 0.3), _toward(k[14], k[13], 0.3)]
    cv2.fillPoly(mask, [np.array(between_legs, np.int32)], cv2.GC_BGD)
    _draw_skeleton(mask, person.keypoints, cv2.GC_FGD, int(0.08 * width), (left, top))
    cv2.setRNGSeed(0)  # GrabCut's k-means initialisation: the same cut-out every run
    cv2.grabCut(crop[..., ::-1].copy(), mask, None, np.zeros((1, 65)), np.zeros((1, 65)), 5,
                cv2.GC_INIT_WITH_MASK)
    foreground = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground)
    if count < 2:
        raise RajaxError(f"could not cut {person.name} out of {person.image}")
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    foreground = labels == largest
    rows, cols = np.nonzero(foreground)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    # Soften the edge by one pixel so the pasted person does not look cut with scissors.
    alpha = cv2.GaussianBlur(foreground.astype(np.float32), (3, 3), 0)
    rgba = np.dstack([crop, np.round(alpha * 255).astype(np.uint8)])
    return np.ascontiguousarray(rgba[r0:r1, c0:c1])


def load_people() -> list[np.ndarray]:
    """The RGBA sprites of ``PEOPLE``, in order."""
    from PIL import Image

    folder = ultralytics_assets_dir()
    sprites = []
    for person in PEOPLE:
        path = folder / person.image
        if not path.is_file():
            raise RajaxError(f"{path}: the ultralytics sample photograph is missing")
        photo = np.asarray(Image.open(path).convert("RGB"))
        others = [p for p in PEOPLE if p is not person and p.image == person.image]
        sprites.append(cut_out_person(photo, person, others))
    return sprites
