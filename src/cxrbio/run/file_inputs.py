"""The files outside the run directory that a unit is made from, per kind (declared by ``Artifact.files``).

A stamp's fingerprint covers the content of these files (:mod:`cxrbio.run.digests`), so replacing
one in place makes the units made from it stale, and a ``touch`` does not. Each resolver answers
"which outside files would this unit read today?" from the run, the config and the unit's
options, the same way the stage that makes the unit decides it; freshness calls it both when a
stage judges its own units and when ``cxrbio status`` re-judges a stamp, so the two cannot differ.

Kinds:

* ``weights``: the pretrained weights of a pretrained strategy's fold (a weights file, or the
  model of ``run:RUN_DIR/STRATEGY``); nothing for ``scratch`` or for ImageNet's (Keras checks the
  downloaded file's hash itself);
* ``masks``: the user's and the data set's mask files (``--masks`` folder, manifest columns);
* ``radiomics_params``: the pyradiomics parameter file;
* ``external_data``: an external set's CSV and its images (``cxrbio evaluate``).

Labels (``model.weights``, ``lung mask files``, ...) are what ``cxrbio status`` names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxrbio.config import Config
from cxrbio.errors import CxrbioError
from cxrbio.models.strategies import Strategy
from cxrbio.models.weights import weights_file
from cxrbio.run.rundir import RunDir

Files = dict[str, list[Path]]
Resolver = Callable[[RunDir, dict[str, Any], dict[str, Any], dict[str, Any]], Files]


def weights_inputs(run: RunDir, tree: dict[str, Any], unit: dict[str, Any], options: dict[str, Any]) -> Files:
    strategy = unit.get("strategy")
    if strategy is None or not Strategy.parse(str(strategy)).pretrained:
        return {}
    path = weights_file(tree["model"]["weights"])
    return {"model.weights": [path]} if path is not None else {}


def mask_inputs(run: RunDir, tree: dict[str, Any], unit: dict[str, Any], options: dict[str, Any]) -> Files:
    from cxrbio.features.lung_masks import plan_masks

    if not run.manifest.is_file():
        return {}
    manifest = run.read_manifest()
    included = manifest[manifest["included"]]
    folder = options.get("folder")
    try:
        jobs = plan_masks(run, Config.model_validate(tree), included, folder, options.get("source"))
    except CxrbioError:  # the mask folder is gone: that is a change of input, said as such
        return {"mask folder": [Path(str(folder))]} if folder else {}
    files: Files = {}
    lungs = sorted({job.user_mask for job in jobs if job.user_mask})
    bodies = sorted({job.body_mask for job in jobs if job.body_mask})
    if lungs:
        files["lung mask files"] = [Path(p) for p in lungs]
    if bodies:
        files["body mask files"] = [Path(p) for p in bodies]
    return files


def radiomics_parameter_inputs(run: RunDir, tree: dict[str, Any], unit: dict[str, Any], options: dict[str, Any]) -> Files:
    from cxrbio.features.radiomic_features import params_path

    try:
        path = params_path(Config.model_validate(tree))
    except CxrbioError:
        path = Path(tree["radiomics"]["params"]).expanduser()
    return {"radiomics parameter file": [path]}


def external_data_inputs(run: RunDir, tree: dict[str, Any], unit: dict[str, Any], options: dict[str, Any]) -> Files:
    import pandas as pd

    files: Files = {}
    data = options.get("data")
    if data and Path(str(data)).suffix.lower() == ".csv":
        files["external data CSV"] = [Path(str(data))]
    manifest = run.path("external_manifest", name=unit["name"])
    if manifest.is_file():
        frame = pd.read_parquet(manifest, columns=["path", "included"])
        files["external images"] = sorted(Path(p) for p in frame.loc[frame["included"], "path"])
    return files


RESOLVERS: dict[str, Resolver] = {
    "weights": weights_inputs,
    "masks": mask_inputs,
    "radiomics_params": radiomics_parameter_inputs,
    "external_data": external_data_inputs,
}


def outside_files(kind: str | None, run: RunDir, tree: dict[str, Any], unit: dict[str, Any],
                  options: dict[str, Any]) -> Files:
    """Label -> the outside files a unit of this kind reads, as the stage that makes it would choose them."""
    return RESOLVERS[kind](run, tree, unit, options) if kind else {}
