"""Model files and checkpoints (issue 20, defects 2 and 5): weights in safetensors, never a pickle; a
resumed training ends with the same model, byte for byte, as an uninterrupted one."""
from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import pytest

from pinlanding.collections.pipeline import call_stage
from pinlanding.encoders import fit as fit_module
from pinlanding.encoders import train as train_module
from pinlanding.encoders.bundle import MODEL_FILE, load_bundle

_spec = importlib.util.spec_from_file_location("encoder_fixtures", Path(__file__).parents[1] / "encoders" / "conftest.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)  # the encoder tests' tiny runs, without copying them


class Planted:
    """A pickle that, if ever unpickled, leaves a marker file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_model_files_are_safetensors_and_a_planted_pickle_is_refused(tmp_path: Path) -> None:
    from pinlanding.encoders.checkpoint import CHECKPOINT_FILE

    layout = fixtures.build_run(tmp_path, n=16)
    call_stage(train_module.run_train, fixtures.tiny_config(epochs=1), layout)
    encoder = layout.dir("encoder")
    for name in (MODEL_FILE, CHECKPOINT_FILE):
        head = (encoder / name).read_bytes()[:200]
        assert b'"__metadata__"' in head and not head.startswith((b"PK", b"\x80"))  # not a zip, not a pickle
    assert load_bundle(encoder).vocab  # round-trips
    marker = tmp_path / "code-ran"
    for name in (MODEL_FILE, CHECKPOINT_FILE):
        (encoder / name).write_bytes(pickle.dumps(Planted(marker)))
    with pytest.raises(ValueError, match="not a pinlanding model file"):
        load_bundle(encoder)
    call_stage(train_module.run_train, fixtures.tiny_config(epochs=1), layout)  # the checkpoint is ignored
    assert not marker.exists()


def test_a_resumed_training_ends_with_the_same_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # product texts through MiniLM: its dropout draws from the torch RNG at every step
    cfg = fixtures.tiny_config(epochs=3, checkpoint_every=1, product_text="transformer")
    real_loss, steps = fit_module.multi_positive_clip_loss, []

    def counted(*args, **kwargs):
        steps.append(1)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(fit_module, "multi_positive_clip_loss", counted)
    straight = fixtures.build_run(tmp_path / "a", n=24)
    call_stage(train_module.run_train, cfg, straight)
    per_epoch = len(steps) // 3

    def killed_in_epoch_3(*args, **kwargs):  # the first step of epoch 3: epochs 1-2 are checkpointed
        steps.append(1)
        if len(steps) > 5 * per_epoch:
            raise KeyboardInterrupt("killed")
        return real_loss(*args, **kwargs)

    resumed = fixtures.build_run(tmp_path / "b", n=24)
    monkeypatch.setattr(fit_module, "multi_positive_clip_loss", killed_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        call_stage(train_module.run_train, cfg, resumed)
    monkeypatch.undo()
    call_stage(train_module.run_train, cfg, resumed)
    assert (resumed.dir("encoder") / MODEL_FILE).read_bytes() == (straight.dir("encoder") / MODEL_FILE).read_bytes()
