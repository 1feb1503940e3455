"""Model files and training checkpoints as safetensors (tensors) plus JSON (everything else): never a pickle.

:func:`write_tensors` / :func:`read_tensors` hold one file each: the tensors, and a JSON document in the
safetensors header under ``pinlanding``. Reading refuses anything else (a pickle, a foreign safetensors
file, a truncated one) with a clear error, so a file planted in a run folder cannot run code.

A training checkpoint (:func:`save_checkpoint`) holds the trainable weights, the optimizer and LR
scheduler states, the RNG states (torch, CUDA, numpy, python) and the epoch: the data order of an epoch
is drawn from ``(seed, epoch)`` and the training set is part of the ``setup`` digest, so a run resumed
from it continues exactly where an uninterrupted run would be (bit-identical on CPU).
"""
from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from pinlanding.collections.artifacts import AnyPath, as_path, atomic_path

CHECKPOINT_FILE = "checkpoint.safetensors"
_META = "pinlanding"
_HEADER_LIMIT = 100_000_000  # a header larger than this is not one we wrote


def write_tensors(path: AnyPath, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write tensors and a JSON document atomically as one safetensors file (same inputs, same bytes)."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}  # clone: no shared storage
    data = save_safetensors(tensors, metadata={_META: json.dumps(meta, sort_keys=True, default=_plain)})
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_tensors(path: AnyPath) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and JSON document of a file written by :func:`write_tensors`; ValueError for anything else."""
    data = as_path(path).read_bytes()
    try:
        # the header's layout is fixed by the safetensors format: 8-byte little-endian length, then JSON;
        # the library reads tensors from bytes but returns no metadata, hence this read of the header
        size = int.from_bytes(data[:8], "little")
        if not 0 < size <= min(_HEADER_LIMIT, len(data) - 8):
            raise ValueError("no safetensors header")
        meta = json.loads(json.loads(data[8:8 + size])["__metadata__"][_META])
        tensors = load_safetensors(data)
    except (ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise ValueError(f"{path} is not a pinlanding model file (safetensors with pinlanding metadata): "
                         f"{type(exc).__name__}; delete it and rerun the train stage") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a pinlanding model file: its metadata is not a JSON object")
    return tensors, meta


def read_meta(path: AnyPath) -> dict[str, Any]:
    """The JSON document of a file written by :func:`write_tensors`, reading only its header (the layout
    :func:`read_tensors` describes), from a local or an object-store path."""
    try:
        with as_path(path).open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size <= _HEADER_LIMIT:
                raise ValueError("no safetensors header")
            meta = json.loads(json.loads(f.read(size))["__metadata__"][_META])
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not a pinlanding tensor file: {type(exc).__name__}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a pinlanding tensor file: its metadata is not a JSON object")
    return meta


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and arrays (metrics, thresholds)."""
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else str(value)


def seed_all(seed: int) -> None:
    """Seed torch, numpy's and python's global RNGs: a checkpoint then holds the same states in every run."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The torch, CUDA, numpy and python RNG states as (tensors, JSON)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors = {"rng.torch": torch.get_rng_state(), "rng.numpy": torch.from_numpy(keys.astype(np.int64))}
    if torch.cuda.is_available():
        tensors |= {f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    version, internal, gauss_next = random.getstate()
    return tensors, {"numpy": [kind, int(pos), int(has_gauss), float(gauss)],
                     "python": [version, list(internal), gauss_next]}


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = meta["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(path: AnyPath, setup: str, epoch: int, history: list[dict[str, float]], model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    """Everything a resumed run needs to continue bit-identically after ``epoch``."""
    tensors = {f"model.{k}": v for k, v in model.trainable_state_dict().items()}
    opt = optimizer.state_dict()
    opt_meta: dict[str, Any] = {}
    for index, values in opt["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{name}"] = value
            else:
                opt_meta[f"{index}.{name}"] = value
    rng_tensors, rng_meta = rng_state()
    write_tensors(path, tensors | rng_tensors, {
        "kind": "checkpoint", "setup": setup, "epoch": epoch, "history": history, "rng": rng_meta,
        "optimizer": {"param_groups": opt["param_groups"], "state": opt_meta}, "scheduler": scheduler.state_dict()})


def load_checkpoint(path: AnyPath, setup: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, log=print) -> tuple[int, list[dict[str, float]]] | None:
    """Restore a checkpoint of the same ``setup`` into the model, optimizer, scheduler and RNGs; return
    ``(epoch, history)``, or None (train from the start) when there is none or it is another setup's."""
    path = as_path(path)
    if not path.exists():
        return None
    try:
        tensors, meta = read_tensors(path)
    except ValueError as exc:
        log(f"ignoring checkpoint: {exc}")
        return None
    if meta.get("kind") != "checkpoint" or meta.get("setup") != setup:
        return None
    model.load_trainable({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            index, name = key[6:].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta["optimizer"]["state"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["optimizer"]["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    scheduler.load_state_dict(meta["scheduler"])
    set_rng_state(tensors, meta["rng"])
    return int(meta["epoch"]), list(meta["history"])
