"""The papers thinwire checks, one folder each: analysis/papers/<paper>/ holds

    claims.yaml   the paper's claims (analysis/claims.py reads and judges them)
    runs.yaml     the runs-sheet entries of its experiments, one section per sheet: quick, standard, full,
                  paper
    figures.py    its own figures, registered by name with analysis.figures.figure (optional)

Adding a paper is adding a folder; a runs sheet (config/quick.yaml, ...) names the papers it runs and
its scale (`papers: [...]`, `scale: quick`), and `compose_runs` turns that into the sheet's `runs`.
Generic code (figures, claims, report) knows no paper's methods or experiments: they live here.

Layering: the `standard` section (config/standard.yaml: the claims 2 cores can power in about 90
minutes) lists only the experiments it changes. Each entry of the paper's `quick` section that has no
`standard` entry of the same `name` is taken from quick unchanged; a `standard` entry replaces every quick
entry of its name (all of them where quick has several, e.g. a sim and a real entry), in the place of the
first, and a `standard` entry whose name quick lacks comes after the quick ones. A paper without a
`standard` section runs its quick entries at the standard scale. `full` and `paper` are whole sections.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import sys
from pathlib import Path
from typing import Any

import yaml
from thinwire.algorithms.comm import ThinwireError

PAPERS_DIR = Path(__file__).parent / "papers"
SCALES = ("quick", "standard", "full", "paper")
# A scale whose section lists only the experiments it changes, over the section of another (see above).
LAYERED = {"standard": "quick"}


def paper_names(folder: Path = PAPERS_DIR) -> list[str]:
    """Every paper folder (one with a claims.yaml), sorted."""
    return sorted(p.parent.name for p in Path(folder).glob("*/claims.yaml"))


@functools.lru_cache(maxsize=64)
def _parsed_once(text: str) -> Any:
    return yaml.safe_load(text) or {}


def _parsed(text: str) -> Any:
    """yaml.safe_load(text), parsed once per distinct text (the report resolves a claim's run layout
    hundreds of times; parsing was 21 s of its 100), handed out as a copy the caller may change."""
    return copy.deepcopy(_parsed_once(text))


def _sections(paper: str, folder: Path) -> tuple[Path, dict]:
    path = Path(folder) / paper / "runs.yaml"
    if not path.exists():
        return path, {}
    try:
        sections = _parsed(path.read_text())
    except yaml.YAMLError as e:
        raise ThinwireError(f"runs file {path} is not valid YAML: {e}") from None
    if not isinstance(sections, dict):
        raise ThinwireError(f"{path}: a runs file maps sections among {list(SCALES)} to lists of entries")
    unknown = set(sections) - set(SCALES)
    if unknown:
        raise ThinwireError(f"{path}: sections must be among {list(SCALES)}, got {sorted(unknown)}")
    sections = {scale: entries or [] for scale, entries in sections.items()}  # an empty section: no entries
    for scale, entries in sections.items():
        if not isinstance(entries, list) or any(not isinstance(e, dict) or "name" not in e for e in entries):
            raise ThinwireError(f"{path}: section `{scale}` must be a list of runs-sheet entries, each with a name")
    return path, sections


def layer(base: list[dict], changes: list[dict]) -> list[dict]:
    """`base`'s entries with each experiment that `changes` names replaced by `changes`' entries of that
    name (in the place of its first base entry), then `changes`' entries of names `base` lacks."""
    by_name: dict[str, list[dict]] = {}
    for entry in changes:
        by_name.setdefault(entry["name"], []).append(entry)
    out, placed = [], set()
    for entry in base:
        name = entry["name"]
        if name not in by_name:
            out.append(entry)
        elif name not in placed:
            out += by_name[name]
            placed.add(name)
    return out + [e for e in changes if e["name"] not in placed]


def paper_runs(paper: str, scale: str, folder: Path = PAPERS_DIR) -> list[dict]:
    """The runs-sheet entries of `paper`'s experiments at `scale` (none when it has no runs.yaml); a
    layered scale (LAYERED) over its base section, as the module docstring says."""
    path, sections = _sections(paper, folder)
    if not path.exists():
        return []
    if scale in LAYERED:
        base = LAYERED[scale]
        if base not in sections:
            raise ThinwireError(f"{path} has no `{base}` section: paper {paper} has no runs for a {scale} sheet")
        return layer(list(sections[base]), list(sections.get(scale, [])))
    if scale not in sections:
        raise ThinwireError(f"{path} has no `{scale}` section: paper {paper} has no runs for a {scale} sheet")
    return list(sections[scale])


def compose_runs(config: dict[str, Any], folder: Path = PAPERS_DIR) -> dict[str, Any]:
    """The config with `papers` and `scale` replaced by `runs`: each named paper's entries at that scale,
    paper after paper in the order named, then the config's own `runs` (if any). A config without
    `papers` is returned as it is."""
    if not isinstance(config, dict) or "papers" not in config:
        return config
    config = dict(config)
    papers, scale = config.pop("papers"), config.pop("scale", None)
    if scale not in SCALES:
        raise ThinwireError(f"config.scale must be one of {list(SCALES)} when config.papers is set, got {scale!r}")
    known = paper_names(folder)
    if not isinstance(papers, list) or not papers or any(p not in known for p in papers):
        raise ThinwireError(f"config.papers must list papers among {known}, got {papers!r}")
    own = config.get("runs", [])
    if not isinstance(own, list):
        raise ThinwireError(f"config.runs must be a list of runs-sheet entries, got {type(own).__name__}")
    config["runs"] = [entry for p in papers for entry in paper_runs(p, scale, folder)] + own
    return config


def load_paper_figures(folder: Path = PAPERS_DIR) -> list[str]:
    """Import every paper's figures.py, which registers its figures; return the papers that have one.
    Imported by path: the paper folders are data folders, not a package to list in pyproject.toml."""
    found = []
    for path in sorted(Path(folder).glob("*/figures.py")):
        name = f"thinwire.analysis.papers.{path.parent.name}.figures"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        found.append(path.parent.name)
    return found
