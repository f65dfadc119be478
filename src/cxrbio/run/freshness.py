"""Whether a unit of the run directory is up to date: one mechanism, stamps, for every stage.

When a stage completes a unit (a fold model, a strategy's embeddings of one fold, the masks,
an analysis) it writes, last, a stamp: ``stamps/<artifact path>.json``. The stamp holds

* ``fingerprint``: a hash of what the unit was made from: the artifact's schema version, the
  cxrbio version, the config values that shape it (declared in :mod:`cxrbio.run.artifacts`), the
  stage's options (a mask folder, the analysis parts), the ``digest`` of every input unit, and
  the *content* digest of every file outside the run it reads (``files``: a weights file, mask
  files, the radiomics parameter file, an external data set; :mod:`cxrbio.run.file_inputs`), so a
  file replaced in place makes the unit stale and a ``touch`` does not (:mod:`cxrbio.run.digests`);
* ``digest``: the identity of what was written (a content hash where one is cheap, e.g. the
  model file, else a fresh token), which downstream fingerprints use;
* ``settings``, ``options``, ``inputs``, ``files``: the parts of the fingerprint in the clear, so a
  stale unit can say *why* it is stale ("train.learning_rate: 0.0001 -> 0.001", "model.weights
  changed: /data/backbone.weights.h5");
* ``info``: what the stage wants to keep about the unit (e.g. a fold's best epoch).

A unit is fresh when its stamp exists and its fingerprint equals the one today's inputs and
settings give. Because a fingerprint covers input digests, a retrained fold makes its
embeddings stale, which make its analysis stale, without any stage knowing the others.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrbio import __version__
from cxrbio.run.artifacts import ARTIFACTS, STAMPS, Artifact, settings_values
from cxrbio.run.atomic import atomic_write_text
from cxrbio.run.digests import MISSING, file_digests
from cxrbio.run.file_inputs import outside_files

if TYPE_CHECKING:
    from cxrbio.run.rundir import RunDir



@dataclass(frozen=True)
class Expected:
    """What a unit's stamp must say to be fresh, computed from today's inputs and settings."""

    artifact: str
    unit: dict[str, Any]
    fingerprint: str
    settings: dict[str, Any]
    options: dict[str, Any]
    inputs: dict[str, str]
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # label -> {path: content digest}


@dataclass(frozen=True)
class Stamp:
    artifact: str
    unit: dict[str, Any]
    schema: int
    cxrbio: str
    fingerprint: str
    digest: str
    settings: dict[str, Any]
    options: dict[str, Any]
    inputs: dict[str, str]
    written: str
    info: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # outside files read: label -> {path: digest}


@dataclass(frozen=True)
class Status:
    """``state``: fresh, stale or missing; ``reason``: why it is not fresh, in words."""

    state: str
    reason: str = ""
    stamp: Stamp | None = None

    @property
    def fresh(self) -> bool:
        return self.state == "fresh"


def stamp_path(root: Path, artifact: str, unit: dict[str, Any]) -> Path:
    return root / STAMPS / f"{ARTIFACTS[artifact].relative(**unit)}.json"


def read_stamp(root: Path, artifact: str, unit: dict[str, Any]) -> Stamp | None:
    path = stamp_path(root, artifact, unit)
    try:
        return Stamp(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def unit_label(artifact: str, unit: dict[str, Any]) -> str:
    return ARTIFACTS[artifact].relative(**unit)


def input_units(root: Path, artifact: Artifact, unit: dict[str, Any]) -> dict[str, Stamp]:
    """Stamps of the units ``artifact`` is computed from (fields it shares with an input are bound)."""
    found: dict[str, Stamp] = {}
    for name in artifact.inputs:
        source = ARTIFACTS[name]
        bound = {p: unit[p] for p in source.params if p in unit}
        pattern = source.pattern.format(**{p: bound.get(p, "*") for p in source.params})
        for path in sorted((root / STAMPS).glob(f"{pattern}.json")):
            try:
                stamp = Stamp(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if stamp.artifact == name and all(str(stamp.unit.get(k)) == str(v) for k, v in bound.items()):
                found[unit_label(name, stamp.unit)] = stamp
    return found


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def expected(run: RunDir, artifact: str, config_tree: dict[str, Any], unit: dict[str, Any] | None = None,
             options: dict[str, Any] | None = None) -> Expected:
    """The fingerprint a fresh stamp of this unit must carry, from the run's stamps and ``config_tree``."""
    declared = ARTIFACTS[artifact]
    unit = dict(unit or {})
    options = dict(options or {})
    settings = settings_values(declared, config_tree)
    inputs = {label: stamp.digest for label, stamp in input_units(run.root, declared, unit).items()}
    files = {label: file_digests(paths) for label, paths in
             outside_files(declared.files, run, config_tree, unit, options).items()}
    payload = {"artifact": artifact, "schema": declared.schema, "cxrbio": __version__, "unit": unit,
               "settings": settings, "options": options, "inputs": inputs}
    if files:  # units that read no outside file keep the fingerprint they always had
        payload["files"] = files
    return Expected(artifact, unit, _hash(payload), settings, options, inputs, files)


def status(run: RunDir, want: Expected) -> Status:
    stamp = read_stamp(run.root, want.artifact, want.unit)
    if stamp is None:
        return Status("missing", "not made yet")
    if stamp.fingerprint == want.fingerprint:
        return Status("fresh", stamp=stamp)
    return Status("stale", explain(stamp, want), stamp)


def explain(stamp: Stamp, want: Expected) -> str:
    """Why a stamp no longer matches, in words."""
    declared = ARTIFACTS[want.artifact]
    if stamp.schema != declared.schema or stamp.cxrbio != __version__:
        return f"made by cxrbio {stamp.cxrbio} (file schema {stamp.schema}); this is {__version__} (schema {declared.schema})"
    reasons = [f"{k}: {stamp.settings.get(k)!r} -> {want.settings.get(k)!r}"
               for k in sorted(set(stamp.settings) | set(want.settings)) if stamp.settings.get(k) != want.settings.get(k)]
    reasons += [f"option {k}: {stamp.options.get(k)!r} -> {want.options.get(k)!r}"
                for k in sorted(set(stamp.options) | set(want.options)) if stamp.options.get(k) != want.options.get(k)]
    changed = sorted(k for k in set(stamp.inputs) | set(want.inputs) if stamp.inputs.get(k) != want.inputs.get(k))
    if changed:
        reasons.append("inputs changed: " + ", ".join(changed[:4]) + (" ..." if len(changed) > 4 else ""))
    reasons += file_changes(stamp.files, want.files)
    return "; ".join(reasons) or "made from other inputs"


def file_changes(recorded: dict[str, dict[str, str]], today: dict[str, dict[str, str]]) -> list[str]:
    """'model.weights changed: /x/b.weights.h5' per label whose outside files differ from those recorded."""
    reasons = []
    for label in sorted(set(recorded) | set(today)):
        before, now = recorded.get(label, {}), today.get(label, {})
        if before == now:
            continue
        if not before:
            reasons.append(f"{label}: content not recorded (made by a cxrbio that recorded only paths)")
            continue
        missing = sorted(p for p, d in now.items() if d == MISSING)
        edited = sorted(p for p in now if p in before and before[p] != now[p] and now[p] != MISSING)
        listed = sorted(set(now) ^ set(before))
        for kind, paths in (("changed", edited), ("missing", missing), ("now other files", listed)):
            if paths:
                shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
                reasons.append(f"{label} {kind}: {shown}")
    return reasons


def write_stamp(run: RunDir, want: Expected, digest: str | None = None, info: dict[str, Any] | None = None) -> Stamp:
    """Record that the unit is complete; call after every file of the unit is written."""
    stamp = Stamp(artifact=want.artifact, unit=want.unit, schema=ARTIFACTS[want.artifact].schema, cxrbio=__version__,
                  fingerprint=want.fingerprint, digest=digest or secrets.token_hex(16), settings=want.settings,
                  options=want.options, inputs=want.inputs,
                  written=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), info=dict(info or {}), files=want.files)
    atomic_write_text(stamp_path(run.root, want.artifact, want.unit), json.dumps(asdict(stamp), indent=1, default=str))
    return stamp


def remove_stamp(run: RunDir, artifact: str, unit: dict[str, Any]) -> None:
    stamp_path(run.root, artifact, unit).unlink(missing_ok=True)


def all_stamps(root: Path) -> list[tuple[Path, Stamp]]:
    out = []
    for path in sorted((root / STAMPS).rglob("*.json")):
        try:
            out.append((path, Stamp(**json.loads(path.read_text()))))
        except (OSError, ValueError, TypeError):
            continue
    return out


def folds_by_strategy(root: Path, artifact: str) -> dict[str, list[int]]:
    """Strategies with stamped units of a (strategy, fold) artifact, and their folds."""
    found: dict[str, list[int]] = {}
    for _path, stamp in all_stamps(root):
        if stamp.artifact == artifact:
            found.setdefault(str(stamp.unit["strategy"]), []).append(int(stamp.unit["fold"]))
    return {s: sorted(f) for s, f in sorted(found.items())}


def stale_inputs(run: RunDir, artifact: str, config_tree: dict[str, Any], unit: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(input unit, its stage, why) for each input of ``artifact``'s unit that is no longer fresh itself.

    A unit computed from a stale input would be stale in spirit though its own fingerprint still
    matches (e.g. embeddings of a fold model that has since been retrained); stages refuse such
    inputs, naming the stage to re-run.
    """
    found = []
    for label, stamp in input_units(run.root, ARTIFACTS[artifact], unit).items():
        state = status(run, expected(run, stamp.artifact, config_tree, stamp.unit, stamp.options))
        if not state.fresh:
            found.append((label, ARTIFACTS[stamp.artifact].stage, state.reason))
    return found
