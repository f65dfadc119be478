"""Radiomics throughput: cxrbio against pyradiomics' own batch command line, cores, and the cache.

On the same phantom images, masks and parameter file (default: configs/radiomics.yaml), in
one run, prints images/s of:

* ``pyradiomics BATCH.csv -p PARAMS --jobs W`` (its batch mode; images and masks handed to it
  as the exact letterboxed arrays cxrbio extracts from, written to NRRD beforehand and not
  timed), against ``cxrbio``'s extraction with W worker processes, which also decodes and
  letterboxes every PNG inside the timed region;
* cxrbio with 1 worker against W workers;
* a re-run served by the cache, as a share of the first run's time.

The first comparison runs in ``--pairs`` interleaved pairs (each cxrbio run with an empty cache);
it prints the median ratio and its range (benchmarks/paired.py).

The same feature values from both tools are checked on every image.

    uv run python benchmarks/radiomics_throughput.py [--images 210] [--size 200] [--workers N] [--pairs 3]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from paired import interleaved


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=210, help="phantom images (split over 7 classes)")
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--workers", type=int, default=None, help="default: every available core")
    parser.add_argument("--params", default="radiomics.yaml")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved pyradiomics/cxrbio pairs")
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    import SimpleITK as sitk

    from cxrbio.config import load_config
    from cxrbio.data.imageio import read_image
    from cxrbio.data.phantom import generate_phantom
    from cxrbio.data.preprocess import letterbox
    from cxrbio.features.radiomic_features import BORDER, params_path
    from cxrbio.run.mask_files import read_mask
    from cxrbio.run.rundir import RunDir
    from cxrbio.runtime.executors import available_cores, make_executor
    from cxrbio.stages import masks, radiomics, scan

    workers = args.workers or available_cores()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        generate_phantom(tmp / "phantom", per_class=max(1, args.images // 7), size=args.size, seed=11)

        def extract(cache: str, workers: int):  # the run's config names no cache: the environment picks one
            os.environ["CXRBIO_CACHE_DIR"] = str(tmp / cache)
            return radiomics.run(tmp / "run", executor=make_executor("local", workers=workers), force=True)

        base = load_config(None, {"data.image_size": args.size, "folds.k": 3, "radiomics.params": args.params})
        scan.run(tmp / "run", data=tmp / "phantom", config=base)
        run = RunDir(tmp / "run")
        masks.run(run.root)
        manifest = run.read_manifest()
        n = len(manifest)
        params = params_path(base)

        # pyradiomics' batch mode, on the exact arrays cxrbio extracts from.
        rows = []
        for row in manifest.itertuples():
            image, _ = letterbox(read_image(row.path).pixels, args.size)
            mask = read_mask(run, row.image_id).astype(np.uint8)
            image_file, mask_file = tmp / "nrrd" / f"{row.image_id}.nrrd", tmp / "nrrd" / f"{row.image_id}-mask.nrrd"
            image_file.parent.mkdir(exist_ok=True)
            sitk.WriteImage(sitk.GetImageFromArray(np.pad(image.astype(np.float32), BORDER)), str(image_file))
            sitk.WriteImage(sitk.GetImageFromArray(np.pad(mask, BORDER)), str(mask_file))
            rows.append({"ID": row.image_id, "Image": str(image_file), "Mask": str(mask_file)})
        with (tmp / "batch.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["ID", "Image", "Mask"])
            writer.writeheader()
            writer.writerows(rows)
        cli = Path(sys.executable).with_name("pyradiomics")
        fresh_caches = iter(f"cache-w{k}" for k in range(args.pairs))
        extracted = []

        def pyradiomics_batch() -> None:
            (tmp / "cli.csv").unlink(missing_ok=True)  # pyradiomics appends to an existing output
            subprocess.run([str(cli), str(tmp / "batch.csv"), "-p", str(params), "-j", str(workers),
                            "-o", str(tmp / "cli.csv"), "-f", "csv", "--verbosity", "1"], check=True)

        def cxrbio_extraction() -> None:
            extracted.append(extract(next(fresh_caches), workers))

        times = interleaved(pyradiomics_batch, cxrbio_extraction, pairs=args.pairs)
        cli_seconds, parallel_seconds = statistics.median(times.baseline), statistics.median(times.variant)
        first = extracted[0]
        started = time.perf_counter()
        cached = extract("cache-w0", workers)
        cached_seconds = time.perf_counter() - started
        started = time.perf_counter()
        extract("cache-1", 1)
        serial_seconds = time.perf_counter() - started

        assert (first.status["status"] == "ok").all() and (cached.status["cache"] == "hit").all()
        theirs = pd.read_csv(tmp / "cli.csv").set_index("ID").loc[first.features["image_id"]]
        ours = first.features.set_index("image_id")
        common = [c for c in ours.columns if c in theirs.columns]
        worst = float(np.nanmax(np.abs(ours[common].to_numpy() - theirs[common].to_numpy().astype(float))
                                / (np.abs(theirs[common].to_numpy().astype(float)) + 1e-9)))

    print(f"{n} images at {args.size} px, {len(common)} features each ({params.name}), {workers} worker(s)")
    print(f"pyradiomics batch --jobs {workers}, median of pairs: {n / cli_seconds:7.2f} img/s ({cli_seconds:.1f} s)")
    print(f"cxrbio, {workers} workers, median of pairs:          {n / parallel_seconds:7.2f} img/s ({parallel_seconds:.1f} s)")
    print(times.describe("ratio pyradiomics time / cxrbio time (>= 1.0 wanted)"))
    print(f"cxrbio, 1 worker:            {n / serial_seconds:7.2f} img/s ({serial_seconds:.1f} s)"
          f"   {workers} workers / 1: {serial_seconds / parallel_seconds:.2f}x")
    print(f"cxrbio, cached re-run:       {cached_seconds:.2f} s = {100 * cached_seconds / parallel_seconds:.1f}% of the first run")
    print(f"largest relative difference between the two tools' values: {worst:.2e}")


if __name__ == "__main__":
    main()
