"""Region geometry against hand-computed boxes; cropping and antialiased resizing against NumPy."""

import numpy as np
import pytest

from rajax.data import regions


def test_region_names_and_resolution():
    assert len(regions.REGION_NAMES) == 11
    assert regions.REGION_NAMES[0] == "full" and regions.REGION_NAMES[-1] == "actor"
    assert regions.REGION_NAMES[1:10] == tuple(f"grid_{r}_{c}" for r in range(3) for c in range(3))
    assert regions.resolve_regions(None) == regions.REGION_NAMES
    assert regions.resolve_regions(11) == regions.REGION_NAMES
    assert regions.resolve_regions(10) == regions.REGION_NAMES[:10]
    assert regions.resolve_regions("no_actor") == regions.REGION_NAMES[:10]
    assert regions.resolve_regions(1) == ("full",)
    # Any subset, put back in the fixed order.
    assert regions.resolve_regions("actor, full") == ("full", "actor")
    assert regions.resolve_regions(["grid_2_2", "grid_0_1"]) == ("grid_0_1", "grid_2_2")
    for bad in ("grid_3_3", ["full", "full"], 5, []):
        with pytest.raises(ValueError):
            regions.resolve_regions(bad)


def test_central_square_box():
    assert regions.central_square_box(240, 320) == (40, 0, 240)  # landscape: horizontal centre
    assert regions.central_square_box(320, 240) == (0, 40, 240)  # portrait: vertical centre
    assert regions.central_square_box(496, 518) == (11, 0, 496)  # the dancer video
    assert regions.central_square_box(100, 103) == (1, 0, 100)  # odd margin: extra pixel right
    assert regions.central_square_box(100, 101) == (0, 0, 100)  # one pixel: to the right margin
    assert regions.central_square_box(64, 64) == (0, 0, 64)
    with pytest.raises(ValueError, match="frame size must be positive, got 0x10"):
        regions.central_square_box(0, 10)


@pytest.mark.parametrize(
    "side, crop, offsets",
    [
        (240, 150, (0, 45, 90)),  # Breakfast: 5/8 * 240, 3/16 * 240, 3/8 * 240
        (224, 140, (0, 42, 84)),
        (496, 310, (0, 93, 186)),  # the dancer video
        (16, 10, (0, 3, 6)),
        (250, 156, (0, 47, 94)),  # 156.25 -> 156, 46.875 -> 47, 93.75 -> 94
        (13, 8, (0, 2, 5)),  # 8.125 -> 8, 2.4375 -> 2, 4.875 -> 5
    ],
)
def test_grid_boxes_by_hand(side, crop, offsets):
    boxes = regions.region_boxes(side, regions.REGION_NAMES[1:10])
    expected = [(offsets[c], offsets[r], crop) for r in range(3) for c in range(3)]
    np.testing.assert_array_equal(boxes, expected)


def test_every_box_lies_inside_the_square():
    for side in range(1, 300):
        for x0, y0, s in regions.region_boxes(side, regions.REGION_NAMES, (side - 3, -5, side // 2)):
            assert s >= 1 and x0 >= 0 and y0 >= 0 and x0 + s <= side and y0 + s <= side


def test_actor_box():
    assert regions.actor_box(240, None) == (0, 0, 240)  # no detection: the full square
    assert regions.actor_box(240, (30, 40, 100)) == (30, 40, 100)
    assert regions.actor_box(240, (200, 190, 100)) == (140, 140, 100)  # shifted inside
    assert regions.actor_box(240, (-10, 5, 300)) == (0, 0, 240)  # larger than the square: clipped
    assert regions.actor_box(240, (10.5, 20.4, 99.5)) == (11, 20, 100)  # half up
    assert regions.actor_box(240, (0, 0, 0)) == (0, 0, 240)
    boxes = regions.region_boxes(240, ("full", "actor"), (30, 40, 100))
    np.testing.assert_array_equal(boxes, [[0, 0, 240], [30, 40, 100]])


def test_central_square_crop_is_a_view():
    frames = np.arange(2 * 6 * 10 * 3, dtype=np.uint8).reshape(2, 6, 10, 3)
    square = regions.central_square_crop(frames)
    np.testing.assert_array_equal(square, frames[:, :, 2:8])
    assert np.shares_memory(square, frames)
    np.testing.assert_array_equal(regions.central_square_crop(frames[0].transpose(1, 0, 2)).shape, (6, 6, 3))


def triangle_resize_reference(image, size):
    """Antialiased bilinear resize written out: a triangle filter stretched by the scale factor
    (when shrinking), sampled at pixel centres, weights renormalised at the borders."""

    def matrix(n_in, n_out):
        scale = n_out / n_in
        support = 1.0 / min(scale, 1.0)  # the kernel widens when shrinking (antialiasing)
        out = np.zeros((n_out, n_in))
        for i in range(n_out):
            centre = (i + 0.5) / scale  # output pixel centre in input coordinates
            for j in range(n_in):
                distance = abs((j + 0.5) - centre) / support
                out[i, j] = max(0.0, 1.0 - distance)
            out[i] /= out[i].sum()
        return out

    rows = matrix(image.shape[0], size)
    cols = matrix(image.shape[1], size)
    return np.einsum("ij,jkc,lk->ilc", rows, image.astype(np.float64), cols)


@pytest.mark.parametrize("side, size", [(40, 10), (30, 16), (12, 20)])  # 4x and 1.9x down, 1.7x up
def test_resize_square_is_antialiased_bilinear(side, size):
    rng = np.random.default_rng(side)
    image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    expected = triangle_resize_reference(image, size)
    resized = regions.resize_square(image[None], size, output="float32")[0]
    assert resized.dtype == np.float32 and resized.shape == (size, size, 3)
    np.testing.assert_allclose(resized, expected / 127.5 - 1.0, atol=1e-4)
    as_uint8 = regions.resize_square(image, size, output="uint8")
    rounded = np.floor(np.clip(expected, 0, 255) + 0.5)
    difference = np.abs(as_uint8.astype(np.float64) - rounded)
    assert as_uint8.dtype == np.uint8 and difference.max() <= 1  # float32 vs float64 at .5 ties
    assert (difference == 0).mean() > 0.98


def test_resize_square_value_range_and_errors():
    white = np.full((2, 3, 8, 8, 3), 255, np.uint8)
    out = regions.resize_square(white, 4)
    assert out.shape == (2, 3, 4, 4, 3)
    np.testing.assert_allclose(out, 1.0)
    np.testing.assert_allclose(regions.resize_square(np.zeros((5, 5, 3), np.uint8), 3), -1.0)
    with pytest.raises(ValueError, match="square"):
        regions.resize_square(np.zeros((4, 6, 3), np.uint8), 4)
    with pytest.raises(ValueError, match="output"):
        regions.resize_square(white, 4, output="float16")


def test_crop_regions_crops_the_right_boxes():
    # Pixel (y, x) of frame n holds (n, y, x): every crop can be read back exactly.
    n, side = 3, 16
    frames = np.zeros((n, side, side, 3), np.uint8)
    frames[..., 0] = np.arange(n)[:, None, None]
    frames[..., 1] = np.arange(side)[None, :, None]
    frames[..., 2] = np.arange(side)[None, None, :]
    actor = (5, 2, 10)
    names = ("grid_0_0", "grid_1_2", "grid_2_1", "actor")  # all of side 10: no resampling at size 10
    crops = regions.crop_regions(frames, names, actor, size=10, output="uint8")
    assert crops.shape == (4, n, 10, 10, 3)
    for crop, (x0, y0, s) in zip(crops, [(0, 0, 10), (6, 3, 10), (3, 6, 10), (5, 2, 10)]):
        np.testing.assert_array_equal(crop, frames[:, y0 : y0 + s, x0 : x0 + s])
    full = regions.crop_regions(frames, ("full",), size=8, output="float32")[0]
    np.testing.assert_allclose(
        full, np.stack([triangle_resize_reference(f, 8) for f in frames]) / 127.5 - 1.0, atol=1e-4
    )
