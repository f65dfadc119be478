import numpy as np
import pytest

from cxrbio.data.preprocess import letterbox, letterbox_geometry, letterbox_mask


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (100, 200, (0, 50, 200, 100)),   # landscape: bars above and below
        (400, 200, (50, 0, 100, 200)),   # portrait: bars left and right
        (256, 256, (0, 0, 200, 200)),    # square: no padding
        (256, 205, (20, 0, 160, 200)),   # like the real sample's portrait images
    ],
)
def test_geometry_scales_longer_side_and_centres(height, width, expected):
    g = letterbox_geometry(height, width, 200)
    assert (g.x0, g.y0, g.width, g.height) == expected


def test_letterbox_pads_with_black_and_keeps_content():
    image = np.full((100, 300), 0.8, dtype=np.float32)
    out, g = letterbox(image, 60)
    assert out.shape == (60, 60) and out.dtype == np.uint8
    assert (g.width, g.height) == (60, 20)
    assert np.all(out[~g.content_mask()] == 0)
    assert np.all(np.abs(out[g.content_mask()].astype(int) - 204) <= 1)


def test_aspect_ratio_is_kept():
    image = np.zeros((120, 60), dtype=np.float32)
    image[:, :30] = 1.0  # left half white
    out, g = letterbox(image, 100)
    content = out[g.y0 : g.y0 + g.height, g.x0 : g.x0 + g.width]
    assert content.shape == (100, 50)
    assert content[:, :24].min() > 240 and content[:, 26:].max() < 15


def test_mask_letterbox_keeps_labels():
    mask = np.zeros((50, 100), dtype=np.uint8)
    mask[10:40, 10:50] = 1
    mask[10:40, 60:90] = 2
    out = letterbox_mask(mask, 64)
    assert set(np.unique(out)) == {0, 1, 2}
    assert out[:16].max() == 0  # padding rows stay background
