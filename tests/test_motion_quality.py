"""The shipped `motion-cmu` on held-out CMU test windows: its card's numbers reproduce, it beats
zero-velocity at 1 s, its futures differ, and its latent is in use."""
import pytest
import torch

import vqtool
from vqtool.hub import describe

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def model():
    return vqtool.load("motion-cmu", device="cpu")


@pytest.fixture(scope="module")
def ltd(shared_data):
    from vqtool.data.motion import test_sets

    return test_sets(shared_data / "cmu-mocap")["ltd"]


def test_the_card_reproduces_on_the_ltd_windows(model, ltd):
    from vqtool.families.motion.task import evaluate_windows

    torch.set_num_threads(1)
    found = evaluate_windows(model, ltd, "ltd", "cpu", counts=(1, 10))
    card = describe("motion-cmu")["metrics"]
    for key in ("ltd_euler_best1_1000ms", "ltd_euler_best10_80ms", "ltd_euler_best10_1000ms",
                "ltd_euler_mean10_400ms", "ltd_mpjpe_best10_1000ms", "ltd_apd10_mm"):
        assert found[key] == pytest.approx(card[key], rel=1e-3, abs=2e-4), key


def test_better_than_zero_velocity_at_one_second(model, ltd):
    from vqtool.families.motion.task import evaluate_windows, zero_velocity_metrics

    found = evaluate_windows(model, ltd, "ltd", "cpu", counts=(10,))
    still = zero_velocity_metrics({"ltd": ltd})
    assert found["ltd_euler_best10_1000ms"] < 0.9 * still["ltd_euler_best1_1000ms"]
    assert found["ltd_mpjpe_best10_1000ms"] < 0.9 * still["ltd_mpjpe_best1_1000ms"]
    assert found["ltd_apd10_mm"] > 100  # ten futures that differ by more than a few millimetres


def test_the_latent_is_used():
    card = describe("motion-cmu")["metrics"]
    assert card["active_dims"] >= 4 and card["kl_nats"] > 1
    assert set(card["baselines"]) >= {"zero-velocity"} and len(card["baselines"]) >= 3
