"""Behaviour pins: fixed-seed model outputs, loss values and gradients, and assigner targets must equal the
values recorded before the loss/assigner/anchor rewrite (tests/fixtures/pins/make_pins.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pin_cases import assigner_case, loss_case, model_case

PINS = np.load(Path(__file__).parent / "fixtures" / "pins" / "pins.npz")


def _check(prefix: str, got: dict[str, np.ndarray], rtol: float, atol: float) -> None:
    expected = sorted(k[len(prefix):] for k in PINS.files if k.startswith(prefix))
    assert sorted(got) == expected
    for k in expected:
        np.testing.assert_allclose(got[k], PINS[prefix + k], rtol=rtol, atol=atol, err_msg=f"{prefix}{k}")


@pytest.mark.parametrize("name", ["yolov8n.yaml", "yolov8_BiFormer.yaml"])
def test_model_outputs_pinned(name: str) -> None:
    _check(f"model/{name}/", model_case(name), rtol=1e-4, atol=1e-4)


def test_loss_values_and_gradients_pinned() -> None:
    got = loss_case()
    _check("loss/", got, rtol=1e-4, atol=1e-7)
    assert float(np.abs(got["grad0"]).sum()) > 0  # the pin covers a loss with foreground anchors


def test_assigner_targets_pinned() -> None:
    got = assigner_case()
    assert got["fg"].sum() > 10  # several anchors are assigned, to more than one gt
    assert len(np.unique(got["gt_idx"][got["fg"]])) > 1
    _check("assigner/", got, rtol=1e-5, atol=1e-6)
