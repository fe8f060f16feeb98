"""Zero-cost proxies against values worked out by hand on networks small enough to do so, and as
search metrics (scored on the proxy's data, recorded per trial, never trained)."""

from __future__ import annotations

import math

import pytest
import torch
from test_search import TINY, rows, write_search
from torch import nn

from archspec.runner.zero_cost import grad_norm, naswot, synflow
from archspec.search import study


def test_synflow_of_a_linear_chain_is_its_conserved_flow_once_per_layer():
    """With positive weights and an all-ones input, a linear chain's output sum R is the same
    bilinear form seen from each layer: sum(theta * dR/dtheta) over one layer equals R (synaptic
    flow is conserved layer to layer, Tanaka et al. 2020). Two layers: ln(2R). Here a 1x1 conv of
    weights |-1| from 3 to 4 channels on 2x2 pixels, then a linear map of weights 0.5 to 5 outputs:
    R = 5 outputs x 16 inputs x 3 channels x 0.5 = 120."""
    conv = nn.Conv2d(3, 4, 1, bias=False)
    head = nn.Linear(16, 5, bias=False)
    nn.init.constant_(conv.weight, -1.0)  # synflow takes |theta|
    nn.init.constant_(head.weight, 0.5)
    model = nn.Sequential(conv, nn.Flatten(), head)
    assert synflow(model, torch.randn(7, 3, 2, 2)) == pytest.approx(math.log(2 * 120))
    assert conv.weight[0, 0, 0, 0].item() == -1.0  # scored on a copy: the model is left as it was


def test_naswot_counts_the_units_on_which_images_agree():
    """Two images whose activation inputs have opposite signs on all 6 units agree nowhere, so K is
    6 I and ln det K = 2 ln 6; two images of the same signs agree everywhere: K singular."""
    model = nn.Sequential(nn.Flatten(), nn.ReLU())
    opposite = torch.tensor([[1.0] * 6, [-1.0] * 6]).reshape(2, 6, 1, 1)
    assert naswot(model, opposite) == pytest.approx(2 * math.log(6))
    assert naswot(model, opposite.abs()) == -math.inf


def test_grad_norm_of_a_zero_classifier_is_that_of_the_uniform_guess():
    """Zero weights give uniform probabilities 1/C, so the cross-entropy gradient of the weight row
    of class k is (1/C - [k = y]) x: the whole gradient's norm is |x| sqrt((C - 1) / C)."""
    classes = 4
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, classes))
    nn.init.zeros_(model[1].weight)
    nn.init.zeros_(model[1].bias)
    x = torch.tensor([[2.0, -1.0, 2.0]]).reshape(1, 3, 1, 1)
    expected = 3.0 * math.sqrt((classes - 1) / classes)  # |x| = 3
    assert grad_norm(model, x, torch.tensor([1])) == pytest.approx(expected)


def test_a_search_scores_untrained_networks_on_the_proxys_data(tmp_path):
    """Zero-cost metrics as objectives: every trial records them, and nothing was trained."""
    extra = "proxy: {batch_size: 8, train_images: 16, val_images: 16}\nbudget: {trials: 2}\n"
    goals = [("naswot", "maximize"), ("synflow", "maximize"), ("grad_norm", "maximize")]
    search = write_search(tmp_path / "z.yaml", {"group_size": [1, 16]}, goals, extra, base=TINY)
    study.run_search(search, tmp_path / "out")
    trials = rows(tmp_path / "out")
    assert len(trials) == 2 and {t["state"] for t in trials} == {"complete"}
    for t in trials:
        assert all(math.isfinite(float(t[m])) for m, _ in goals), t
    assert trials[0]["naswot"] != trials[1]["naswot"]  # two architectures, two scores
    assert not list((tmp_path / "out").glob("trials/*/run"))


def test_a_search_scores_and_trains_when_accuracy_is_an_objective_too(tmp_path):
    """Beside accuracy (trained) a zero-cost metric is scored on the same trial."""
    extra = "proxy: {batch_size: 8, steps: 2, train_images: 16, val_images: 16}\nbudget: {trials: 1}\n"
    goals = [("accuracy", "maximize"), ("naswot", "maximize")]
    search = write_search(tmp_path / "z.yaml", {"group_size": [1, 16]}, goals, extra, base=TINY)
    study.run_search(search, tmp_path / "out")
    (trial,) = rows(tmp_path / "out")
    assert trial["state"] == "complete", trial
    assert 0 <= float(trial["accuracy"]) <= 1 and math.isfinite(float(trial["naswot"]))
