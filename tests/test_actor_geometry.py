"""Actor Focus geometry against hand-computed cases (rajax.detection.geometry)."""

import numpy as np
import pytest

from rajax.data.regions import central_square_box
from rajax.detection import geometry


def test_mean_box_averages_each_coordinate():
    boxes = [[10, 20, 30, 60], [14, 22, 40, 70], [0, 0, 20, 50]]
    assert geometry.mean_box(boxes) == pytest.approx([8.0, 14.0, 30.0, 60.0])
    assert geometry.mean_box([]) is None
    assert geometry.mean_box(np.zeros((0, 4))) is None


def test_original_and_square_coordinates_round_trip():
    # Landscape 240x320: the square starts 40 px from the left.
    assert geometry.original_to_square([100, 50, 160, 170], 240, 320) == [60, 50, 120, 170]
    assert geometry.square_to_original([60, 50, 120, 170], 240, 320) == [100, 50, 160, 170]
    # Portrait 320x240: the square starts 40 px from the top.
    assert geometry.original_to_square([20, 100, 120, 140], 320, 240) == [20, 60, 120, 100]
    assert geometry.square_to_original([20, 60, 120, 100], 320, 240) == [20, 100, 120, 140]


def test_actor_square_landscape():
    # Box 60 wide, 120 tall; in the square frame x 60..120, y 50..170, centre (90, 110); side 120.
    square = geometry.actor_square([100, 50, 160, 170], 240, 320)
    assert square == [30, 50, 120]
    assert geometry.actor_square_xyxy(square, 240, 320) == [70, 50, 190, 170]


def test_actor_square_portrait():
    # Box 100 wide, 40 tall; in the square frame x 20..120, y 60..100, centre (70, 80); side 100.
    square = geometry.actor_square([20, 100, 120, 140], 320, 240)
    assert square == [20, 30, 100]
    assert geometry.actor_square_xyxy(square, 320, 240) == [20, 70, 120, 170]


def test_actor_square_is_shifted_inside_at_the_top_left():
    # In the square frame the box is x -40..10 (partly left of the central square), y 0..100:
    # centre (-15, 50), side 100, so the square would start at x = -65; it is shifted to 0.
    assert geometry.actor_square([0, 0, 50, 100], 240, 320) == [0, 0, 100]


def test_actor_square_is_shifted_inside_at_the_bottom_right():
    # Square-frame box x 260..280, y 200..240: centre (270, 220), side 40, would start at (250, 200);
    # x is shifted back to 240 - 40 = 200, y already fits.
    assert geometry.actor_square([300, 200, 320, 240], 240, 320) == [200, 200, 40]


def test_actor_square_larger_than_the_frame_is_clipped_to_it():
    assert geometry.actor_square([-10, -20, 330, 250], 240, 320) == [0, 0, 240]
    # Only one side too large: still the whole square frame.
    assert geometry.actor_square([150, 0, 170, 240], 240, 320) == [0, 0, 240]


def test_actor_square_rounds_halves_up():
    # 100x100 frame, box 20 wide and 30.5 tall: side round(30.5) = 31; centre (20.2, 35.25),
    # so x0 = round(20.2 - 15.5) = round(4.7) = 5 and y0 = round(35.25 - 15.5) = round(19.75) = 20.
    assert geometry.actor_square([10.2, 20.0, 30.2, 50.5], 100, 100) == [5, 20, 31]
    # A degenerate (zero-size) box still gives a one-pixel square.
    assert geometry.actor_square([10, 10, 10, 10], 100, 100) == [10, 10, 1]


def test_no_box_falls_back_to_the_full_square_frame():
    assert geometry.actor_square(None, 240, 320) == [0, 0, 240]
    assert geometry.actor_square_xyxy([0, 0, 240], 240, 320) == [40, 0, 280, 240]
    assert geometry.actor_square(None, 320, 240) == [0, 0, 240]
    assert geometry.actor_square_xyxy([0, 0, 240], 320, 240) == [0, 40, 240, 280]


@pytest.mark.parametrize("box", [[10, 10, 5, 20], [0, 0, float("nan"), 5]])
def test_invalid_box_is_rejected(box):
    with pytest.raises(ValueError):
        geometry.actor_square(box, 100, 100)


def test_actor_square_invariants_on_random_boxes():
    """Inside the square frame, the right size, and covering the box wherever the frame allows."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        height, width = (int(v) for v in rng.integers(20, 400, size=2))
        offset_x, offset_y, frame_side = central_square_box(height, width)
        x0, x1 = np.sort(rng.uniform(-0.2 * width, 1.2 * width, size=2))
        y0, y1 = np.sort(rng.uniform(-0.2 * height, 1.2 * height, size=2))
        left, top, side = geometry.actor_square([x0, y0, x1, y1], height, width)
        assert 1 <= side <= frame_side
        assert 0 <= left <= frame_side - side and 0 <= top <= frame_side - side
        assert abs(side - min(frame_side, max(x1 - x0, y1 - y0, 1))) <= 0.5 + 1e-9
        # Same centre as the box along each axis where no shift was needed.
        centre_x, centre_y = (x0 + x1) / 2 - offset_x, (y0 + y1) / 2 - offset_y
        if side / 2 + 1 <= centre_x <= frame_side - side / 2 - 1:
            assert abs(left + side / 2 - centre_x) <= 1
        if side / 2 + 1 <= centre_y <= frame_side - side / 2 - 1:
            assert abs(top + side / 2 - centre_y) <= 1
        # The part of the box inside the square frame lies in the actor square (to rounding).
        inner = [max(x0 - offset_x, 0), max(y0 - offset_y, 0),
                 min(x1 - offset_x, frame_side), min(y1 - offset_y, frame_side)]
        if inner[0] < inner[2] and inner[1] < inner[3] and side < frame_side:
            assert left <= inner[0] + 1 and inner[2] <= left + side + 1
            assert top <= inner[1] + 1 and inner[3] <= top + side + 1
