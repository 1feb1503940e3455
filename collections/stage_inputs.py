"""What a stage takes, stated once: its config sections and a typed inputs object.

A stage is a function such as ``run_vocab(cfg: VocabConfig, ray_cfg: Runtime[RayConfig], inputs: VocabInputs)``.
Each parameter annotated with a section's model (a field type of ``PipelineConfig``) receives that section,
and the section is in the stage's fingerprint unless it is marked :data:`Runtime` (how to run, not what comes
out). The parameter annotated with a :class:`StageInputs` subclass receives the inputs object: a frozen
dataclass whose fields declare everything the stage reads,

- ``artifact("catalog")``: a folder of the run (the field holds its path),
- ``decisions("value", ...)``: the review decisions of those families (the decisions file's path),
- ``external("vocab.judge.queries")``: a file a config key names (its resolved path, None when unset),
- ``source_catalog()``: the input catalogue (ingest only),

and whose ``outputs`` are the folders it writes. The pipeline builds the object (:meth:`StageInputs.build`) and
fingerprints exactly these fields (:meth:`StageInputs.digests`); the object's ``layout`` hands out only the
declared folders and the outputs, so reading an undeclared folder raises.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar, Literal, TypeVar

from pinlanding.collections.artifacts import AnyPath, as_path, is_remote, json_digest, tree_digest_or_absent
from pinlanding.collections.config import PipelineConfig
from pinlanding.collections.layout import RunLayout, resolve_data_path

T = TypeVar("T")
RUNTIME = "runtime"  # Annotated marker: the section says how the stage runs, so it stays out of the fingerprint
Runtime = Annotated[T, RUNTIME]

Group = Literal["inputs", "external", "catalog"]  # where a read goes in the fingerprint


@dataclass(frozen=True)
class Read:
    """One declared read: ``kind`` says how its value is found and digested, ``name`` names it in the fingerprint
    (a run folder, a dotted config key; ``review`` for the decisions)."""

    kind: Literal["artifact", "decisions", "external", "catalog"]
    name: str
    families: tuple[str, ...] = ()  # decisions only: the families whose decisions change the stage's result

    @property
    def group(self) -> Group:
        return {"artifact": "inputs", "decisions": "inputs", "external": "external", "catalog": "catalog"}[self.kind]

    def resolve(self, cfg: PipelineConfig, layout: RunLayout, catalog: Path | None) -> Any:
        """The field's value for a run."""
        if self.kind == "artifact":
            return layout.root / self.name
        if self.kind == "decisions":
            from pinlanding.vocab.decisions import decisions_path

            return decisions_path(layout, cfg.vocab.decisions_path)
        if self.kind == "catalog":
            if catalog is None:
                raise ValueError("the ingest stage needs --catalog PATH")
            return Path(catalog)
        value: Any = cfg
        for part in self.name.split("."):
            value = getattr(value, part)
        if not value:
            return None
        return as_path(value) if is_remote(value) else resolve_data_path(value)

    def digest(self, value: Any) -> str | None:
        """The value's content digest (None for an unset external file, "absent" for a missing one)."""
        if self.kind == "decisions":
            from pinlanding.vocab.decisions import family_digest

            return family_digest(value, self.families)
        if self.kind == "catalog":
            return catalog_digest(value)
        return None if value is None else tree_digest_or_absent(value)


def artifact(folder: str) -> Any:
    """A field holding the path of the run folder ``folder`` (``catalog``, ``vocabulary``, ...)."""
    return field(metadata={"read": Read("artifact", folder)})


def decisions(*families: str) -> Any:
    """A field holding the path of the run's review decisions; only ``families`` are fingerprinted."""
    return field(metadata={"read": Read("decisions", "review", families)})


def external(key: str) -> Any:
    """A field holding the file the dotted config ``key`` names, resolved as :func:`resolve_data_path` does."""
    return field(metadata={"read": Read("external", key)})


def source_catalog() -> Any:
    """A field holding the input catalogue given on the command line."""
    return field(metadata={"read": Read("catalog", "catalog")})


def catalog_digest(path: Path) -> str:
    """A cheap fingerprint of the input catalogue: names, sizes and modification times of its files."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return json_digest([(str(p.relative_to(path)) if p != path else p.name, p.stat().st_size, p.stat().st_mtime_ns)
                        for p in files])


@dataclass(frozen=True)
class StageInputs:
    """Base of a stage's inputs type: ``layout`` is the run folder narrowed to the declared folders and
    ``outputs``; subclasses add one field per read (see the module docstring)."""

    outputs: ClassVar[tuple[str, ...]] = ()  # the run folders the stage writes
    layout: RunLayout

    @classmethod
    def reads(cls) -> dict[str, Read]:
        """Field name -> its declared read."""
        return {f.name: f.metadata["read"] for f in fields(cls) if "read" in f.metadata}

    @classmethod
    def folders(cls) -> tuple[str, ...]:
        """The run folders it reads (``review`` for the decisions), as the fingerprint names them."""
        return tuple(r.name for r in cls.reads().values() if r.group == "inputs")

    @classmethod
    def build(cls, cfg: PipelineConfig, layout: RunLayout, catalog: Path | None = None) -> "StageInputs":
        """The inputs object for a run folder and its config (``catalog``: the input catalogue, for ingest)."""
        values = {name: read.resolve(cfg, layout, catalog) for name, read in cls.reads().items()}
        readable = tuple(r.name for r in cls.reads().values() if r.kind == "artifact")
        return cls(layout=layout.narrowed(readable + cls.outputs), **values)

    def digests(self) -> dict[Group, Any]:
        """The fingerprint of everything it lists: ``inputs`` (folders and decisions), ``external`` (config key ->
        file digest) and ``catalog``, each present only where declared."""
        out: dict[Group, Any] = {}
        for name, read in self.reads().items():
            digest = read.digest(getattr(self, name))
            if read.group == "catalog":
                out["catalog"] = digest
            else:
                out.setdefault(read.group, {})[read.name] = digest
        return out


@dataclass(frozen=True)
class StageSignature:
    """What a stage function takes, read from its annotations."""

    sections: dict[str, str]  # parameter -> config section
    runtime: frozenset[str]  # sections left out of the fingerprint
    inputs_param: str
    inputs: type[StageInputs]

    @property
    def fingerprinted(self) -> tuple[str, ...]:
        """The config sections that change its result, in parameter order."""
        return tuple(s for s in self.sections.values() if s not in self.runtime)

    def arguments(self, cfg: PipelineConfig, layout: RunLayout, catalog: Path | None = None) -> dict[str, Any]:
        """The keyword arguments of a call on a run folder."""
        return {**{param: getattr(cfg, section) for param, section in self.sections.items()},
                self.inputs_param: self.inputs.build(cfg, layout, catalog)}


def _section_types() -> dict[type, str]:
    return {f.annotation: name for name, f in PipelineConfig.model_fields.items()}


@lru_cache(maxsize=None)
def signature(fn: Callable[..., Any]) -> StageSignature:
    """Read a stage function's config sections and inputs type from its annotations (parameters of other types
    are left to their defaults); a TypeError when it takes no inputs object."""
    sections, runtime, inputs = {}, set(), None
    by_type = _section_types()
    hints = typing.get_type_hints(fn, include_extras=True)
    hints.pop("return", None)
    for param, hint in hints.items():
        marked = typing.get_origin(hint) is Annotated and RUNTIME in hint.__metadata__
        base = typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint
        if isinstance(base, type) and issubclass(base, StageInputs):
            inputs = (param, base)
        elif base in by_type:
            sections[param] = by_type[base]
            if marked:
                runtime.add(by_type[base])
    if inputs is None:
        raise TypeError(f"stage function {fn.__qualname__} has no parameter typed with a StageInputs subclass")
    return StageSignature(sections, frozenset(runtime), inputs[0], inputs[1])
