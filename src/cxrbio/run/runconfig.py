"""The config belongs to the run: written once by the stage that creates the run, read by every later one.

A later stage given ``--config`` compares it with the run's own:

* the same, or different only in sections that shape no stored model (``analysis`` and
  ``report``, for the stages that read them): the stage runs with the run's config and those
  sections from the file; its results record the settings they were made with;
* different elsewhere: refused, listing the differing keys, unless ``reconfigure`` (``--reconfigure`` on
  ``cxrbio data scan`` and ``cxrbio train``), which moves every
  artifact the changed keys shape, and everything computed from those, to ``superseded-<time>/``
  (nothing is deleted), then writes the new config and notes the change in ``run.json``. This
  works per artifact, not per stage: an ``evaluation`` key moves the metrics, which ``cxrbio
  train`` then recomputes from the trained folds it kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cxrbio.config import Config, config_to_yaml, load_config
from cxrbio.errors import ConfigError
from cxrbio.run.artifacts import ARTIFACTS, artifacts_shaped_by, downstream_artifacts, flatten
from cxrbio.run.atomic import atomic_write_text
from cxrbio.run.rundir import RunDir, supersede

#: Sections a stage may take from a --config that differs from the run's (they shape no stored model).
FREE_SECTIONS: dict[str, tuple[str, ...]] = {"analyze": ("analysis", "report"), "report": ("analysis", "report")}


def differences(old: Config, new: Config) -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every key whose value differs."""
    a, b = flatten(old.model_dump(mode="json")), flatten(new.model_dump(mode="json"))
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def describe(changes: list[tuple[str, Any, Any]], limit: int = 6) -> str:
    shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changes[:limit])
    return shown + (f"; and {len(changes) - limit} more" if len(changes) > limit else "")


def _free(key: str, sections: tuple[str, ...]) -> bool:
    return any(key == s or key.startswith(s + ".") for s in sections)


#: Artifacts a reconfiguration never moves: the run's identity, caches, the demo's input data.
KEEP = frozenset({"run_info", "config", "salt", "image_cache", "phantom"})


def top_level_paths(stages: set[str]) -> list[str]:
    """The run-directory entries holding the stamped artifacts of ``stages`` (e.g. train/, metrics/)."""
    return artifact_paths({a.name for a in ARTIFACTS.values() if a.stage in stages})


def artifact_paths(names: set[str]) -> list[str]:
    """The run-directory entries (first path part) holding the given artifacts, minus :data:`KEEP`."""
    paths = [a.pattern.split("/", 1)[0] for a in ARTIFACTS.values() if a.name in names and a.name not in KEEP]
    return list(dict.fromkeys(paths))


def affected_by(keys: list[str]) -> tuple[set[str], set[str]]:
    """(artifacts, their stages) that changing ``keys`` invalidates: shaped by them or computed from those."""
    artifacts = downstream_artifacts(artifacts_shaped_by(keys)) - KEEP
    return artifacts, {ARTIFACTS[a].stage for a in artifacts}


def apply_reconfiguration(run: RunDir, given: Config, changed: list[tuple[str, Any, Any]]) -> list[str]:
    """Move aside what the changed keys invalidate, write ``given`` as the run's config; the stages affected."""
    keys = [k for k, _, _ in changed]
    artifacts, affected = affected_by(keys)
    aside = supersede(run, artifact_paths(artifacts) + ["config.yaml"],
                      reason=f"config changed ({describe(changed)}); stages affected: {', '.join(sorted(affected))}")
    save_config(given, run.config)
    run.record("reconfigured", changed=keys, affected=sorted(affected), superseded=str(aside) if aside else None)
    return sorted(affected)


def resolve(run: RunDir, given: Config | None, *, stage: str,
            reconfigure: bool = False) -> tuple[Config, list[tuple[str, Any, Any]]]:
    """(the config ``stage`` would run with, the changes that need a reconfiguration); changes nothing.

    Raises when ``given`` differs from the run's config in keys ``stage`` may not change, unless ``reconfigure``.
    """
    current = load_config(run.config)
    if given is None:
        return current, []
    changes = differences(current, given)
    free = FREE_SECTIONS.get(stage, ())
    blocking = [c for c in changes if not _free(c[0], free)]
    if not blocking:
        if not changes:
            return current, []
        return current.model_copy(update={section: getattr(given, section) for section in free}), []
    if not reconfigure:
        shaped = sorted(affected_by([k for k, _, _ in blocking])[1])
        raise ConfigError(
            f"{run.root} was made with another config ({describe(blocking)}); these keys shape what "
            f"{', '.join(shaped)} made.",
            fix=f"drop --config to use the run's own ('cxrbio config show {run.root}'), use a new RUN_DIR, or add "
                "--reconfigure (cxrbio data scan, cxrbio train) to move everything those keys shape to "
                "superseded-<time>/ and redo it.")
    return given, blocking


def adopt(run: RunDir, given: Config | None, *, stage: str, reconfigure: bool = False) -> Config:
    """The config ``stage`` runs with on an existing run, given an optional ``--config`` (changes the run's if ``reconfigure``)."""
    config, blocking = resolve(run, given, stage=stage, reconfigure=reconfigure)
    if blocking:
        apply_reconfiguration(run, config, blocking)
    return config


def save_config(config: Config, path: str | Path) -> None:
    """The config as YAML, atomically (a run's config.yaml, or a file the user asked for)."""
    atomic_write_text(Path(path), config_to_yaml(config))
