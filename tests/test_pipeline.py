import numpy as np
import pytest

from cxrbio.config import AugmentConfig
from cxrbio.data.imageio import read_image
from cxrbio.data.input_pipeline import apply_transforms, build_image_cache, make_dataset, transforms_for
from cxrbio.data.preprocess import letterbox
from tests.helpers import make_config, scan

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def scanned(phantom_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    return scan(phantom_dir, make_config(), run).manifest, run


def test_memory_cache_equals_letterbox(scanned):
    manifest, _run = scanned
    images = build_image_cache(manifest.head(10), 64)
    assert images.shape == (10, 64, 64) and images.dtype == np.uint8
    for i, path in enumerate(manifest.head(10)["path"]):
        expected, _ = letterbox(read_image(path).pixels, 64)
        np.testing.assert_array_equal(images[i], expected)


def test_disk_cache_is_reused_and_keyed_by_content(scanned, tmp_path):
    manifest, _run = scanned
    subset = manifest.head(6)
    first = build_image_cache(subset, 64, cache="disk", cache_dir=tmp_path)
    files = list(tmp_path.glob("images-64-*.npy"))
    assert len(files) == 1 and isinstance(first, np.memmap)
    stamp = files[0].stat().st_mtime_ns
    second = build_image_cache(subset, 64, cache="disk", cache_dir=tmp_path)
    assert files[0].stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first, second)
    build_image_cache(subset, 48, cache="disk", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("images-*.npy"))) == 2


def test_evaluation_batches_keep_order_and_never_augment(scanned):
    manifest, _run = scanned
    images = build_image_cache(manifest, 64)
    indices = np.array([5, 0, 3, 7, 2])
    labels = np.array([4, 0, 3, 1, 2])
    batches = list(make_dataset(images, indices, labels, 2, training=False, augment=AugmentConfig()))
    x = np.concatenate([b[0].numpy() for b in batches])
    y = np.concatenate([b[1].numpy() for b in batches])
    assert x.shape == (5, 64, 64, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., 0], images[indices].astype(np.float32))
    np.testing.assert_array_equal(y, labels)


def test_training_shuffles_augments_and_is_seeded(scanned):
    manifest, _run = scanned
    images = build_image_cache(manifest, 64)
    idx = np.arange(len(images))

    def epoch(seed):
        ds = make_dataset(images, idx, idx, 8, training=True, augment=AugmentConfig(), seed=seed)
        return [(x.numpy(), y.numpy()) for x, y in ds]

    a, b, c = epoch(1), epoch(1), epoch(2)
    assert all(np.array_equal(p[0], q[0]) and np.array_equal(p[1], q[1]) for p, q in zip(a, b))
    labels = np.concatenate([y for _, y in a])
    assert sorted(labels) == list(idx) and not np.array_equal(labels, idx)  # every image once, shuffled
    assert not np.array_equal(np.concatenate([y for _, y in c]), labels)
    first = a[0]
    originals = images[first[1]].astype(np.float32)
    assert not np.allclose(first[0][..., 0], originals)  # augmented


def test_shift_and_rotation_geometry_and_black_fill():
    size = 64
    image = np.zeros((1, size, size, 1), np.float32)
    image[0, 20, 32, 0] = 255.0
    moved = apply_transforms(tf.constant(image), transforms_for(tf.constant([0.0]), tf.constant([6.0]), tf.constant([-4.0]), size))
    assert tuple(np.argwhere(moved.numpy()[0, ..., 0] == 255.0)[0]) == (16, 38)
    full = np.full((1, size, size, 1), 200.0, np.float32)
    rotation = transforms_for(tf.constant([np.deg2rad(10.0)]), tf.constant([0.0]), tf.constant([0.0]), size)
    turned = apply_transforms(tf.constant(full), rotation).numpy()
    assert turned[0, 0, 0, 0] == 0.0 and turned[0, 32, 32, 0] == pytest.approx(200.0)  # corners filled black


def test_augmentation_stays_within_the_protocol_bounds():
    """A bright dot at the centre moves at most shift*sqrt(2) px; rotation about the centre does not move it."""
    size = 200
    image = np.zeros((256, size, size), np.uint8)
    image[:, 99:101, 99:101] = 255
    ds = make_dataset(image, np.arange(256), np.zeros(256), 64, training=True, augment=AugmentConfig(), seed=3)
    offsets = []
    for x, _ in ds:
        for frame in x.numpy()[..., 0]:
            ys, xs = np.nonzero(frame > 60)
            offsets.append((ys.mean() - 99.5, xs.mean() - 99.5))
    offsets = np.abs(np.array(offsets))
    assert offsets.max() <= 20.5 and offsets.max() > 15  # the full +-20 px range is used


def test_memmap_cache_feeds_the_dataset(scanned, tmp_path):
    manifest, _run = scanned
    images = build_image_cache(manifest.head(8), 64, cache="disk", cache_dir=tmp_path)
    x = np.concatenate([b[0].numpy() for b in make_dataset(images, np.arange(8), np.zeros(8), 3, training=False)])
    np.testing.assert_array_equal(x[..., 0], np.asarray(images, dtype=np.float32))
