import numpy as np
import pytest
from PIL import Image

from cxrbio.data.imageio import read_image
from cxrbio.errors import ImageReadError
from tests.helpers import write_dicom, write_png, xray_like


def test_8bit_grey_png_keeps_values(tmp_path):
    array = xray_like()
    decoded = read_image(write_png(tmp_path / "a.png", array))
    assert decoded.bits == 8 and decoded.pixels.dtype == np.float32
    np.testing.assert_allclose(decoded.pixels, array / 255.0, atol=1e-6)


def test_16bit_png_is_rescaled_to_full_range(tmp_path):
    array = (np.linspace(1000, 4000, 64 * 48).reshape(64, 48)).astype(np.uint16)  # 12-bit data in 16 bits
    Image.fromarray(array).save(tmp_path / "a.png")
    decoded = read_image(tmp_path / "a.png")
    assert decoded.bits == 16
    assert decoded.pixels.min() == 0.0 and decoded.pixels.max() == pytest.approx(1.0)
    assert np.all(np.diff(decoded.pixels.ravel()) >= 0)  # monotone mapping


def test_rgb_and_rgba_become_grey_with_alpha_on_black(tmp_path):
    grey = xray_like()
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgb.png").pixels, grey / 255.0, atol=1 / 255)
    rgba = np.dstack([np.full((10, 10, 3), 200, np.uint8), np.zeros((10, 10), np.uint8)])
    rgba[:, 5:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    pixels = read_image(tmp_path / "rgba.png").pixels
    assert pixels[:, :5].max() == 0.0  # transparent -> black, like the letterbox padding
    assert pixels[:, 5:].min() == pytest.approx(200 / 255, abs=1e-3)


def test_jpeg(tmp_path):
    Image.fromarray(xray_like()).save(tmp_path / "a.jpg", quality=95)
    decoded = read_image(tmp_path / "a.jpg")
    assert decoded.format == "jpeg" and decoded.pixels.shape == (80, 64)


def test_dicom_rescale_and_window(tmp_path):
    raw = np.tile(np.arange(0, 4000, 4000 / 64, dtype=np.float64).astype(np.uint16), (32, 1))
    plain = read_image(write_dicom(tmp_path / "a.dcm", raw, slope=2.0, intercept=-1000.0))
    assert plain.format == "dicom"
    assert plain.pixels[0, 0] == 0.0 and plain.pixels[0, -1] == pytest.approx(1.0)
    # A narrow window saturates both ends: values below/above it clip to black/white.
    windowed = read_image(write_dicom(tmp_path / "w.dcm", raw, slope=2.0, intercept=-1000.0, window=(3000.0, 1000.0)))
    assert (windowed.pixels == 0.0).sum() > 10 and (windowed.pixels >= 0.999).sum() > 10
    assert (plain.pixels == 0.0).sum() < (windowed.pixels == 0.0).sum()


def test_dicom_monochrome1_is_inverted(tmp_path):
    raw = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (32, 1))
    mono2 = read_image(write_dicom(tmp_path / "m2.dcm", raw, "MONOCHROME2")).pixels
    mono1 = read_image(write_dicom(tmp_path / "m1.dcm", raw, "MONOCHROME1")).pixels
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)
    assert mono1[0, 0] == pytest.approx(1.0)  # high stored value = black in MONOCHROME1


def test_dicom_without_suffix_is_recognised(tmp_path):
    path = write_dicom(tmp_path / "IM0001", np.full((16, 16), 7, np.uint16))
    assert read_image(path).patient_hint == "SECRET-PID-123"


def test_truncated_png_names_the_file(tmp_path):
    path = write_png(tmp_path / "broken.png")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert "broken.png" in info.value.message and info.value.fix


def test_non_image_with_image_suffix(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image")
    with pytest.raises(ImageReadError, match="notes.png: not an image"):
        read_image(path)
