"""Calibration picks thresholds that separate positives and honour the precision target."""
from __future__ import annotations

import numpy as np
import pytest

from pinlanding.encoders.calibrate import NEVER, calibrate, precision_threshold


def test_threshold_is_the_lowest_reaching_the_target_precision():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    pos = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    t, p, r = precision_threshold(scores, pos, 0.75)
    assert t == pytest.approx(0.6) and p == pytest.approx(0.75) and r == pytest.approx(1.0)
    assert precision_threshold(scores, pos, 1.0)[0] == pytest.approx(0.8)
    assert precision_threshold(scores, np.zeros(6, bool), 0.5)[0] == NEVER


def test_calibration_separates_frequent_attributes_and_shrinks_rare_ones():
    rng = np.random.default_rng(0)
    n = 400
    pos = np.zeros((n, 3), dtype=bool)
    pos[:200, 0] = True  # frequent, well separated
    pos[:2, 1] = True  # rare: 2 held-out positives
    pos[:100, 2] = True  # another key
    scores = rng.normal(0.1, 0.05, (n, 3))
    scores[pos] += 0.5
    cal = calibrate(scores, pos, ["color", "color", "gender"], target_precision=0.9, shrinkage=20.0)
    # frequent attribute: the lowest threshold that keeps 90% precision: every positive, few negatives
    assert scores[~pos[:, 0], 0].mean() < cal.thresholds[0] < scores[pos[:, 0], 0].min()
    assert cal.precision[0] >= 0.9 and cal.recall[0] == 1.0
    strict = calibrate(scores, pos, ["color", "color", "gender"], target_precision=1.0, shrinkage=0.0)
    assert strict.thresholds[0] > cal.thresholds[0] and strict.precision[0] == 1.0
    # rare attribute: pulled toward its key's pooled threshold (weight 2 / 22 on its own)
    own, _, _ = precision_threshold(scores[:, 1], pos[:, 1], 0.9)
    key_t, _, _ = precision_threshold(scores[:, :2].ravel(), pos[:, :2].ravel(), 0.9)
    assert cal.thresholds[1] == pytest.approx((2 / 22) * own + (20 / 22) * key_t, rel=1e-4)
    assert list(cal.positives) == [200, 2, 100]
    # confidence separates positives from negatives
    conf = cal.confidence(scores)
    assert conf[pos].mean() > 0.8 and conf[~pos].mean() < 0.2


def test_calibration_rejects_misaligned_input():
    with pytest.raises(ValueError, match="line up"):
        calibrate(np.zeros((3, 2)), np.zeros((3, 2), bool), ["color"])


def test_products_without_the_key_are_not_counted_as_negatives():
    # 20 products have a colour (10 red); 20 have none in extraction but score high for red (unlabelled reds)
    scores = np.concatenate([np.r_[np.full(10, 0.8), np.full(10, 0.2)], np.full(20, 0.7)])[:, None]
    pos = np.r_[np.ones(10, bool), np.zeros(30, bool)][:, None]
    known = np.r_[np.ones(20, bool), np.zeros(20, bool)][:, None]
    strict = calibrate(scores, pos, ["color"], target_precision=0.9, shrinkage=0.0)
    partial = calibrate(scores, pos, ["color"], target_precision=0.9, shrinkage=0.0, known=known)
    assert strict.thresholds[0] == pytest.approx(0.8)  # unlabelled 0.7s count as errors: nothing below 0.8
    assert partial.thresholds[0] == pytest.approx(0.8) and partial.recall[0] == 1.0
    # with unknowns excluded, a product scoring like the known positives is not evidence against them
    mixed = scores.copy()
    mixed[20:] = 0.85
    assert calibrate(mixed, pos, ["color"], 0.9, 0.0).thresholds[0] > 1.0
    assert calibrate(mixed, pos, ["color"], 0.9, 0.0, known=known).thresholds[0] == pytest.approx(0.8)


def test_an_attribute_short_of_the_target_is_never_assigned_even_when_its_key_is():
    # "red" separates perfectly; "teal" scores like its negatives, so no threshold reaches 0.9 for it alone
    scores = np.zeros((40, 2))
    pos = np.zeros((40, 2), dtype=bool)
    pos[:20, 0] = True
    scores[:20, 0], scores[20:, 0] = 0.9, 0.1
    pos[:5, 1] = True
    scores[:, 1] = 0.5
    cal = calibrate(scores, pos, ["color", "color"], target_precision=0.9, shrinkage=20.0)
    assert cal.thresholds[0] < 1.0 and cal.thresholds[1] == pytest.approx(NEVER)
    assert cal.precision[0] == 1.0 and cal.recall[0] == 1.0 and cal.precision[1] == 0.0
    few = calibrate(scores, pos, ["color", "color"], target_precision=0.9, shrinkage=20.0, min_positives=21)
    assert (few.thresholds >= NEVER - 1e-6).all()  # too few held-out positives: nothing is assigned


def test_a_key_the_model_barely_recovers_is_not_assigned_at_all():
    # "brand": one lucky positive scores high, the other 19 score like negatives -> key recall 0.05
    scores = np.full((40, 2), 0.1)
    pos = np.zeros((40, 2), dtype=bool)
    pos[:20, 0], scores[0, 0] = True, 0.9
    pos[:20, 1], scores[:20, 1] = True, 0.8  # "color": every positive recovered
    cal = calibrate(scores, pos, ["brand", "color"], target_precision=0.9, shrinkage=0.0, min_key_recall=0.2)
    assert cal.thresholds[0] == pytest.approx(NEVER) and cal.thresholds[1] < 1.0
    assert calibrate(scores, pos, ["brand", "color"], 0.9, 0.0).thresholds[0] < 1.0  # no gate: assigned


def test_each_key_gets_its_own_confidence_curve_and_it_is_calibrated():
    rng = np.random.default_rng(1)
    n = 4000
    pos = np.zeros((n, 2), dtype=bool)
    pos[: n // 2, 0] = True
    pos[: n // 2, 1] = True
    scores = rng.normal(0.0, 1.0, (n, 2)) * np.array([0.05, 0.2])  # key "sharp" separates, "blurry" overlaps
    scores[pos] += np.array([0.3, 0.3])[np.nonzero(pos)[1]]
    cal = calibrate(scores, pos, ["sharp", "blurry"], target_precision=0.8)
    assert cal.platt.shape == (2, 2) and cal.platt[0, 0] > 2 * cal.platt[0, 1]  # a steeper slope where sharper
    conf = cal.confidence(scores)
    from pinlanding.encoders.metrics import reliability

    for col in (0, 1):
        above = scores[:, col] >= cal.thresholds[col]
        table = reliability({"confidence": conf[above, col].astype(float), "correct": pos[above, col].astype(np.int8)},
                            min_rows=100)
        assert all(b["ok"] for b in table), table  # in every well-filled bin, precision ~ mean confidence


def test_reliability_table_flags_an_overconfident_bin():
    from pinlanding.encoders.metrics import reliability

    conf = np.r_[np.full(300, 0.95), np.full(300, 0.55)]
    correct = np.r_[np.ones(150), np.zeros(150), np.ones(165), np.zeros(135)].astype(np.int8)
    table = {b["bin"]: b for b in reliability({"confidence": conf, "correct": correct})}
    assert table["0.9-1.0"]["precision"] == 0.5 and not table["0.9-1.0"]["ok"]
    assert table["0.5-0.6"]["ok"] and table["0.5-0.6"]["rows"] == 300


def test_single_valued_keys_score_by_softmax_among_their_values():
    from pinlanding.encoders.calibrate import Calibration, key_groups, key_scores

    keys = ["color", "color", "color", "material", "material", "gender"]
    groups = key_groups(keys, ["color", "gender"])  # gender has one value here: nothing to compare it with
    assert groups.tolist() == [0, 0, 0, -1, -1, -1]
    cosine = np.array([[0.6, 0.59, 0.1, 0.3, 0.2, 0.5],   # black, but navy nearly as close
                       [0.5, 0.1, 0.1, 0.3, 0.2, 0.5]])   # black, far from the rest
    scores = key_scores(cosine, groups, scale=20.0)
    assert np.allclose(scores[:, :3].sum(1), 1.0) and np.allclose(scores[:, 3:], cosine[:, 3:])
    assert scores[1, 0] > 0.99 and scores[0, 0] < 0.6  # the clear case ranks first although its cosine is lower
    import torch

    on_torch = key_scores(torch.as_tensor(cosine), groups, 20.0)
    assert isinstance(on_torch, torch.Tensor) and np.allclose(on_torch.numpy(), scores)
    plain = Calibration(*(np.zeros(6) for _ in range(4)), np.zeros((2, 6)))
    assert plain.scores(cosine) is cosine  # without groups (a model saved before them): cosines


def test_a_single_valued_key_answers_with_its_most_probable_value_only():
    import torch

    from pinlanding.encoders.bundle import Scorer
    from pinlanding.encoders.calibrate import Calibration, key_groups

    keys = ["color", "color", "color", "material", "material"]
    groups = key_groups(keys, ["color"])
    # black is the most probable colour; teal's low threshold would give it the larger margin and confidence
    thresholds = np.array([0.4, 0.9, 0.05, 0.3, 0.3], np.float32)
    cal = Calibration(thresholds, np.ones(5), np.ones(5), np.ones(5), np.array([[10.0] * 5, [0.0] * 5]),
                      groups=groups, scale=1.0)
    probs = np.array([[0.6, 0.1, 0.3, 0.5, 0.4]], np.float32)  # already softmax scores on the colour columns
    assert cal.confidence(probs)[0, 2] > cal.confidence(probs)[0, 0]  # by margin teal would win
    assert cal.answers(probs).tolist() == [[True, False, False, True, True]]
    assert torch.equal(cal.answers(torch.as_tensor(probs)), torch.as_tensor(cal.answers(probs)))
    # the scorer assigns black, never teal beside it; both materials above their thresholds stay
    cosine = np.log(probs)  # key_scores turns these back into the same softmax at scale 1
    cosine[:, 3:] = probs[:, 3:]
    scorer = Scorer(np.eye(5, dtype=np.float32), cal, top_k=5)
    idx, conf = scorer.score(cosine)
    assert sorted(i for i in idx[0].tolist() if i >= 0) == [0, 3, 4]
    plain = Calibration(thresholds, np.ones(5), np.ones(5), np.ones(5), np.zeros((2, 5)))
    assert plain.answers(probs).all()  # no single-valued keys: every column may answer


def test_a_single_valued_keys_confidence_is_fitted_on_its_answers_with_a_reliability_per_value():
    rng = np.random.default_rng(1)
    keys = ["color", "color", "color", "material"]
    groups = np.array([0, 0, 0, -1])
    n = 1500
    truth = rng.integers(0, 3, n)
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), truth] += 2.0
    logits[rng.random(n) < 0.3, 0] += 2.0  # the model says "black" on many dark photos of other colours
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    cosine_material = rng.normal(0.2, 0.1, (n, 1))
    pos = np.zeros((n, 4), bool)
    pos[np.arange(n), truth] = True
    pos[: n // 3, 3] = True
    cosine_material[pos[:, 3]] += 0.4
    scores = np.concatenate([probs, cosine_material], 1)
    cal = calibrate(scores, pos, keys, target_precision=0.5, shrinkage=0.0, groups=groups, scale=1.0)
    assert cal.centres.tolist()[:3] == [0.0, 0.0, 0.0] and cal.centres[3] == pytest.approx(cal.thresholds[3])
    conf = cal.confidence(np.array([[0.7, 0.7, 0.7, 0.5]]))[0]
    assert conf[0] < conf[1] - 0.1 and conf[0] < conf[2] - 0.1  # the same probability, a less reliable value
    assert cal.platt[0, 0] == cal.platt[0, 1] == cal.platt[0, 2]  # one slope for the key
    answer = probs.argmax(1)
    c = cal.confidence(scores)[np.arange(n), answer]
    for v in range(3):  # calibrated per value on its answers
        mine = answer == v
        assert abs(c[mine].mean() - (truth[mine] == v).mean()) < 0.05
    old = calibrate(scores, pos, keys, target_precision=0.5, shrinkage=0.0)  # cosine keys: centred on thresholds
    assert np.allclose(old.centres, old.thresholds)


def test_a_scoped_key_is_not_answered_for_products_outside_its_reach():
    from pinlanding.encoders.bundle import Scorer
    from pinlanding.encoders.calibrate import Calibration, key_groups, scope_floors

    keys = ["neck", "neck", "occasion"]
    rng = np.random.default_rng(0)
    # held-out: 100 tops with a neckline (cosines 0.4-0.6 to the best neck value), 100 shoes without (0.0-0.2)
    cosine = np.concatenate([rng.uniform(0.4, 0.6, (100, 3)), rng.uniform(0.0, 0.2, (100, 3))])
    known = np.zeros((200, 3), bool)
    known[:100, :2] = True
    known[:, 2] = True
    floors = scope_floors(cosine, known, keys, ["neck", "sleeve"], quantile=0.01)
    tops = cosine[:100, :2].max(1)  # the tops' best neck cosine
    assert floors[0] == floors[1] == pytest.approx(np.quantile(tops, 0.01)) and 0.4 <= floors[0] < np.median(tops)
    assert floors[2] == -np.inf  # occasion is not scoped: every product has one
    groups = key_groups(keys, ["neck"])
    cal = Calibration(np.array([0.0, 0.0, 0.0], np.float32), np.ones(3), np.ones(3), np.ones(3),
                      np.array([[10.0] * 3, [5.0] * 3]), groups=groups, scale=1.0, floors=floors)
    reach = cal.in_scope(cosine)
    assert reach[:100, :2].any(1).mean() >= 0.98 and not reach[100:, :2].any() and reach[:, 2].all()
    # the scorer answers the shoe's occasion, not its neckline, though the shoe's best neck value is most probable
    shoe, top = np.array([[0.2, 0.0, 0.3]], np.float32), np.array([[0.5, 0.3, 0.3]], np.float32)
    scorer = Scorer(np.eye(3, dtype=np.float32), cal, top_k=3)
    assert sorted(i for i in scorer.score(shoe)[0][0].tolist() if i >= 0) == [2]
    assert sorted(i for i in scorer.score(top)[0][0].tolist() if i >= 0) == [0, 2]
    from dataclasses import replace

    unscoped = replace(cal, floors=None)  # a model file from before floors: every product in scope
    assert sorted(i for i in Scorer(np.eye(3, dtype=np.float32), unscoped, top_k=3).score(shoe)[0][0].tolist()
                  if i >= 0) == [0, 2]
