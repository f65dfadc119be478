"""The study's whole protocol on this machine: training and embedding images/s, and its predicted wall time.

Made for the accelerator machine (JAX, no TensorFlow or pyradiomics there), runs on any Keras
backend and on CPU too. It trains cxrbio's own network (``build_model``, the study's head, the
augmentation inside the model on non-TensorFlow backends or in tf.data on TensorFlow) with
cxrbio's own batches (``make_dataset``) on synthetic uint8 images, so it needs no data set and no
ImageNet download (pretrained strategies load a weights file it writes; the values do not change
the speed).

1. **Choice of batch and precision**: scratch at every ``--batches`` x precision (float32, and
   mixed_float16 where a GPU is present or ``--mixed``); the fastest is kept for the rest.
2. **Training images/s** (one epoch of compilation discarded, then ``--epochs`` timed):
   scratch, ``finetune-N`` for each ``--finetune`` N, offshelf on whole images (the paper's
   ``augment_frozen: true``), and offshelf with the frozen-feature cache (one frozen pass over
   every image, then the head alone on the cached GAP features).
3. **Embedding images/s**: the GAP embedding of every image (also the speed of validation and
   test passes).
4. **Predicted wall time of the protocol** (``configs/paper.yaml``: ``--protocol-images`` images,
   10 folds, the paper's 8 strategies, ``--protocol-epochs`` epochs, 10% inner validation):
   per fold and strategy, epochs x (fit images / train rate + validation images / embed rate)
   + test and embedding passes; finetune-N between measured N is interpolated linearly. Early
   stopping would shorten it; checkpoints (every ``train.checkpoint_seconds``) are not counted.

    # this machine (TensorFlow):            uv run python benchmarks/gpu_protocol.py
    # JAX here:                             KERAS_BACKEND=jax uv run --extra jax python benchmarks/gpu_protocol.py
    # accelerator machine (no TensorFlow):  KERAS_BACKEND=jax PYTHONPATH=src python benchmarks/gpu_protocol.py
    options: [--size 200] [--alpha 1.0] [--images 1024] [--batches 32,64,128] [--epochs 2]
             [--finetune 1,5,11] [--mixed] [--out figures.json]

Prints one line per measurement and a JSON summary (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PAPER_STRATEGIES = ["offshelf", "finetune-1", "finetune-3", "finetune-5", "finetune-7", "finetune-9", "finetune-11",
                    "scratch"]


def device_description() -> str:
    from cxrbio.runtime import backend

    active = backend.name()
    if active == "jax":
        import jax

        devices = jax.devices()
        return f"jax {jax.__version__}: {len(devices)} x {getattr(devices[0], 'device_kind', devices[0].platform)}"
    if active == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"tensorflow {tf.__version__}: {len(gpus)} GPU(s)" if gpus else f"tensorflow {tf.__version__}: CPU"
    return active


class Bench:
    """Synthetic images, a config, and the timing of one network at a time."""

    def __init__(self, args: argparse.Namespace, weights_file: Path) -> None:
        import numpy as np

        from cxrbio.config import load_config

        self.args = args
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, (args.images, args.size, args.size), dtype=np.uint8)
        self.labels = (np.arange(args.images) % 7).astype(np.int32)
        self.config = load_config(None, {"data.image_size": args.size, "model.alpha": args.alpha,
                                         "model.weights": str(weights_file), "train.deterministic": False})

    def build(self, strategy: str, precision: str) -> Any:
        import keras

        from cxrbio.models.mobilenet import build_model
        from cxrbio.models.strategies import Strategy
        from cxrbio.runtime import backend
        from cxrbio.training.data import make_optimizer

        keras.mixed_precision.set_global_policy(precision)
        augment = self.config.augment if backend.augments_in_model() else None
        model = build_model(7, self.args.size, self.config.model, Strategy.parse(strategy), seed=0, augment=augment)
        model.compile(optimizer=make_optimizer(self.config), loss="sparse_categorical_crossentropy")
        return model

    def train_rate(self, model: Any, batch: int, table: Any = None) -> float:
        """Images/s of model.fit over the timed epochs (after one epoch that compiles)."""
        import numpy as np

        from cxrbio.data.input_pipeline import make_dataset
        from cxrbio.runtime import backend
        from cxrbio.training.frozen_cache import feature_dataset

        rows = np.arange(self.args.images)
        features = table
        if table is not None and backend.uses_tf_data():
            import tensorflow as tf

            features = tf.constant(table)  # one table for every epoch, as FoldTrainer does

        def epoch_data(seed: int) -> Any:
            if features is not None:  # cached features
                return feature_dataset(features, rows, self.labels, batch, shuffle_seed=seed)
            return make_dataset(self.images, rows, self.labels, batch, training=True, augment=self.config.augment,
                                seed=seed)

        model.fit(epoch_data(0), epochs=1, verbose=0, shuffle=False)
        started = time.perf_counter()
        for epoch in range(self.args.epochs):
            model.fit(epoch_data(epoch + 1), epochs=1, verbose=0, shuffle=False)
        return self.args.images * self.args.epochs / (time.perf_counter() - started)

    def predict_rate(self, model: Any, batch: int) -> tuple[float, Any]:
        """(images/s of model.predict over every image after one pass that compiles, its outputs)."""
        import numpy as np

        from cxrbio.data.input_pipeline import make_dataset

        rows = np.arange(self.args.images)
        model.predict(make_dataset(self.images, rows, self.labels, batch, training=False), verbose=0)
        started = time.perf_counter()
        outputs = model.predict(make_dataset(self.images, rows, self.labels, batch, training=False), verbose=0)
        return self.args.images / (time.perf_counter() - started), outputs

    def embed_rate(self, model: Any, batch: int) -> float:
        from cxrbio.features.embedding import embedding_model

        return self.predict_rate(embedding_model(model), batch)[0]

    def cached_offshelf(self, precision: str, batch: int) -> tuple[float, float]:
        """(frozen pass images/s, head training images/s on the cached features)."""
        import numpy as np

        from cxrbio.models.surgery import frozen_and_trainable
        from cxrbio.training.data import make_optimizer

        model = self.build("offshelf", precision)
        frozen, trainable = frozen_and_trainable(model, "offshelf")
        frozen_rate, features = self.predict_rate(frozen, batch)
        trainable.compile(optimizer=make_optimizer(self.config), loss="sparse_categorical_crossentropy")
        head_rate = self.train_rate(trainable, batch, table=np.asarray(features, np.float32))
        return frozen_rate, head_rate


def predicted_protocol(rates: dict[str, float], embed: float, cached: tuple[float, float], images: int, folds: int,
                       epochs: int, validation: float) -> dict[str, Any]:
    """Seconds per strategy and in all for the paper's protocol, from the measured rates."""
    measured = {int(k.split("-")[1]): v for k, v in rates.items() if k.startswith("finetune-")}

    def finetune(n: int) -> float:
        if n in measured:
            return measured[n]
        below = max((m for m in measured if m < n), default=min(measured))
        above = min((m for m in measured if m > n), default=max(measured))
        if below == above:
            return measured[below]
        # seconds per image are what add up; interpolate those
        t = (n - below) / (above - below)
        return 1.0 / ((1 - t) / measured[below] + t / measured[above])

    train_images = images * (folds - 1) / folds
    fit, val, test = train_images * (1 - validation), train_images * validation, images / folds
    per_strategy = {}
    for strategy in PAPER_STRATEGIES:
        rate = rates.get(strategy) or (finetune(int(strategy.split("-")[1])) if strategy.startswith("finetune-") else 0)
        per_fold = epochs * (fit / rate + val / embed) + test / embed + images / embed
        per_strategy[strategy] = folds * per_fold
    frozen_rate, head_rate = cached
    per_strategy_cached_offshelf = folds * (images / frozen_rate + epochs * (fit / head_rate + val / head_rate)
                                            + images / embed)
    total = sum(per_strategy.values())
    return {"seconds_per_strategy": per_strategy, "total_seconds": total, "total_hours": total / 3600,
            "image_steps": int(len(PAPER_STRATEGIES) * folds * epochs * fit),
            "offshelf_cached_seconds": per_strategy_cached_offshelf}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--images", type=int, default=1024, help="synthetic images per epoch")
    parser.add_argument("--batches", default="32,64,128")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per measurement (after one that compiles)")
    parser.add_argument("--finetune", default="1,5,11", help="finetune-N measured (others interpolated)")
    parser.add_argument("--mixed", action="store_true", help="also try mixed_float16 without a GPU")
    parser.add_argument("--protocol-images", type=int, default=3905)
    parser.add_argument("--protocol-epochs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from cxrbio.models.weights import load_backbone
    from cxrbio.runtime import backend

    started = time.perf_counter()
    device = device_description()
    print(f"backend {backend.name()}; device {device}; {args.images} images of {args.size} px, alpha {args.alpha}",
          flush=True)
    precisions = ["float32"] + (["mixed_float16"] if backend.has_gpu() or args.mixed else [])
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "backbone.weights.h5"  # stands in for ImageNet's: same shapes, same speed
        load_backbone(args.size, args.alpha, None).save_weights(weights)
        bench = Bench(args, weights)
        choice: dict[str, float] = {}
        for precision in precisions:
            for batch in [int(b) for b in args.batches.split(",") if b]:
                rate = bench.train_rate(bench.build("scratch", precision), batch)
                choice[f"{precision}/{batch}"] = rate
                print(f"scratch   {precision:<14} batch {batch:>4}: {rate:8.1f} img/s", flush=True)
        best = max(choice, key=lambda k: choice[k])
        precision, batch = best.split("/")[0], int(best.split("/")[1])
        print(f"chosen: {precision}, batch {batch}", flush=True)
        rates = {"scratch": choice[best]}
        for n in [int(v) for v in args.finetune.split(",") if v]:
            rates[f"finetune-{n}"] = bench.train_rate(bench.build(f"finetune-{n}", precision), batch)
            print(f"finetune-{n:<3} train: {rates[f'finetune-{n}']:8.1f} img/s", flush=True)
        offshelf_model = bench.build("offshelf", precision)
        rates["offshelf"] = bench.train_rate(offshelf_model, batch)
        print(f"offshelf  train (whole images): {rates['offshelf']:8.1f} img/s", flush=True)
        embed = bench.embed_rate(offshelf_model, batch)
        print(f"embed     {embed:8.1f} img/s", flush=True)
        cached = bench.cached_offshelf(precision, batch)
        print(f"offshelf  frozen-feature cache: frozen pass {cached[0]:8.1f} img/s, head {cached[1]:8.1f} img/s",
              flush=True)
    protocol = predicted_protocol(rates, embed, cached, args.protocol_images, 10, args.protocol_epochs, 0.1)
    summary = {"date": time.strftime("%Y-%m-%d"), "backend": backend.name(), "device": device,
               "python": platform.python_version(), "size": args.size, "alpha": args.alpha, "images": args.images,
               "precision": precision, "batch": batch, "scratch_choices": choice, "train_images_per_second": rates,
               "embed_images_per_second": embed, "offshelf_cached": {"frozen_pass": cached[0], "head": cached[1]},
               "protocol": protocol, "benchmark_seconds": time.perf_counter() - started}
    print(f"predicted protocol ({args.protocol_images} images, 10 folds, {len(PAPER_STRATEGIES)} strategies, "
          f"{args.protocol_epochs} epochs, {protocol['image_steps']:.2e} image-steps): {protocol['total_hours']:.1f} h")
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
