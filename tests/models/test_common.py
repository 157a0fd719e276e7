import pytest

from nbpro_pipeline.models import (
    ASPECT_RATIOS_FIXED,
    PIXEL_SIZES,
    AspectRatio,
    Resolution,
    nearest_aspect_ratio,
    pixel_size,
)


def test_table_covers_every_fixed_ratio_and_resolution():
    assert len(PIXEL_SIZES) == 30
    assert {a for a, _ in PIXEL_SIZES} == set(ASPECT_RATIOS_FIXED)
    assert AspectRatio.AUTO not in ASPECT_RATIOS_FIXED


@pytest.mark.parametrize("aspect", ASPECT_RATIOS_FIXED)
def test_sizes_keep_ratio_and_scale_by_resolution(aspect):
    w1, h1 = pixel_size(aspect, "1K")
    a, b = (int(x) for x in aspect.value.split(":"))
    assert abs(w1 / h1 - a / b) < 0.03  # Google's table rounds to multiples of 16
    assert pixel_size(aspect, Resolution.R2K) == (2 * w1, 2 * h1)
    assert pixel_size(aspect, Resolution.R4K) == (4 * w1, 4 * h1)


def test_known_entries_from_googles_table():
    assert pixel_size("16:9", "4K") == (5504, 3072)
    assert pixel_size("21:9", "1K") == (1584, 672)
    assert pixel_size("2:3", "2K") == (1696, 2528)


def test_auto_has_no_fixed_size():
    with pytest.raises(ValueError, match="auto"):
        pixel_size("auto", "1K")


@pytest.mark.parametrize(
    ("w", "h", "expected"),
    [(1920, 1080, "16:9"), (1080, 1920, "9:16"), (500, 500, "1:1"), (3000, 1280, "21:9"), (800, 1000, "4:5")],
)
def test_nearest_aspect_ratio(w, h, expected):
    assert nearest_aspect_ratio(w, h) == AspectRatio(expected)
