"""The dynamics family: the environments match their definitions, the likelihoods and distances are
right, the gymnasium environments pass gymnasium's checker, the CLI forms and bad input, torchrun."""

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vqtool.data import dynamics as envs
from vqtool.evaluation import distribution_distances

from conftest import run_cli

# ------------------------------------------------------------------------------------ environments


def test_grid_walls_and_free_cells_are_the_papers():
    walls = {(x, y) for x in range(7) for y in range(7) if envs.WALLS[x, y]}
    assert walls == {(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (1, 4), (2, 4), (4, 4), (5, 4)}
    assert len(envs.FREE) == 40


def test_ghost_moves_are_uniform_and_weighted_over_valid_moves():
    # ghost at (5, 3): up is a wall; ghost 1 uniform over 3 moves, ghost 2 0.1/0.4/0.4 renormalised
    assert dict(envs.ghost_moves(5, 3, 1)) == pytest.approx({(5, 2): 1 / 3, (6, 3): 1 / 3, (4, 3): 1 / 3})
    assert dict(envs.ghost_moves(5, 3, 2)) == pytest.approx({(5, 2): 0.1 / 0.9, (6, 3): 0.4 / 0.9, (4, 3): 0.4 / 0.9})
    # a corner: two moves
    assert dict(envs.ghost_moves(0, 0, 2)) == pytest.approx({(0, 1): 0.1 / 0.5, (1, 0): 0.4 / 0.5})


def test_transitions_by_enumeration():
    start = envs.transition(envs.START, 0)  # agent (0,0) moves up to (0,1); ghosts at (1,3) and (5,3)
    assert sum(start.values()) == pytest.approx(1)
    assert len(start) == 9 and {s[:2] for s in start} == {(0, 1)}
    assert start[(0, 1, 1, 2, 6, 3)] == pytest.approx(1 / 3 * 0.4 / 0.9)
    # walking into a wall leaves the agent in place; walking into a ghost ends it, ghosts stay
    assert {s[:2] for s in envs.transition((0, 0, 3, 3, 6, 6), 1)} == {(0, 0)}
    assert envs.transition((0, 0, 0, 1, 6, 6), 0) == {(0, 1, 0, 1, 6, 6): 1.0}


def test_grid_reference_numbers_are_the_issues():
    floors = envs.grid_floors()
    assert floors["pairs"] == 256_000
    assert floors["true_entropy"] == pytest.approx(1.73, abs=0.005)
    assert floors["deterministic_share"] == pytest.approx(0.049, abs=0.001)


def test_toy_reference_numbers_are_the_issues():
    floors = envs.toy_floors()
    assert floors["true_nll"] == pytest.approx(-0.355, abs=0.005)
    assert floors["best_gaussian_nll"] == pytest.approx(0.867, abs=0.005)


def test_toy_function_follows_its_definition():
    rng = np.random.default_rng(0)
    y = envs.toy_sample(np.full(40_000, 0.5), rng)
    curves = np.array([math.log(1.5) + 5, -0.5 + 0.2, 5 * 0.25])
    nearest = np.abs(y[:, None] - curves).argmin(1)
    assert np.bincount(nearest, minlength=3) / len(y) == pytest.approx([0.3, 0.35, 0.35], abs=0.01)
    assert np.std(y[nearest == 0] - curves[0]) == pytest.approx(0.1, abs=0.005)
    assert np.all(np.abs(envs.toy_sample(np.full(1000, -0.5), rng) - 2.5) < 0.6)
    x = np.array([-0.5, 0.0, 0.5])
    grid = np.linspace(-5, 12, 20001)
    assert np.trapezoid(envs.toy_density(grid[:, None], x[None, :]), grid, axis=0) == pytest.approx(1, abs=1e-4)


def test_splits_are_fixed_and_held_out_pairs_never_train():
    assert envs.toy_split("test")[0].tolist() == envs.toy_split("test")[0].tolist()
    assert [len(envs.toy_split(s)[0]) for s in ("train", "validation", "test")] == [2000, 500, 500]
    test, validation = envs.grid_split("test"), envs.grid_split("validation")
    assert len(test) == 1500 and len(validation) == 750
    keys = envs.pair_key(envs.training_pairs())
    assert not np.isin(envs.pair_key(test), keys).any() and not np.isin(envs.pair_key(validation), keys).any()
    assert not np.isin(envs.pair_key(validation), envs.pair_key(test)).any()


def test_training_sampler_draws_the_exact_distribution():
    rows = torch.tensor([[*envs.START, 0]] * 20_000)
    drawn = envs.grid_step(rows[:, :6], rows[:, 6], torch.Generator().manual_seed(0))
    counts = Counter(tuple(s) for s in drawn.tolist())
    truth = envs.transition(envs.START, 0)
    assert set(counts) == set(truth)
    assert max(abs(counts[s] / 20_000 - p) for s, p in truth.items()) < 0.012


def test_check_state_names_the_fault():
    for state, needle in (((0, 0, 1, 3), "6 numbers"), ((7, 0, 1, 3, 5, 3), "outside"), ((0, 0, 1, 1, 5, 3), "wall")):
        with pytest.raises(ValueError, match=needle):
            envs.check_state(state)


# ------------------------------------------------------------------------------------ distances


def test_distances_on_known_cases():
    same = distribution_distances([0.2, 0.8], [0.2, 0.8])
    assert same["tv"] == same["hellinger"] == 0 and same["kl_true_model"] == pytest.approx(0, abs=1e-12)
    apart = distribution_distances([1, 0], [0, 1])
    assert apart["tv"] == 1 and apart["hellinger"] == pytest.approx(1)
    half = distribution_distances([0.5, 0.5], [1, 0])
    assert half["tv"] == pytest.approx(0.5)
    assert half["hellinger"] == pytest.approx(math.sqrt(((math.sqrt(0.5) - 1) ** 2 + 0.5) / 2))
    assert half["kl_model_true"] == pytest.approx(math.log((1 + 1e-5) / (0.5 + 1e-5)))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=12), st.lists(st.floats(0, 1), min_size=2, max_size=12))
def test_hellinger_and_total_variation_bound_each_other(a, b):
    size = min(len(a), len(b))
    p, q = np.array(a[:size]) + 1e-3, np.array(b[:size]) + 1e-3
    p, q = p / p.sum(), q / q.sum()
    d = distribution_distances(p, q)
    assert d["hellinger"] ** 2 - 1e-9 <= d["tv"] <= math.sqrt(2) * d["hellinger"] + 1e-9
    assert 0 <= d["tv"] <= 1 and min(d["kl_true_model"], d["kl_model_true"]) >= -1e-4  # the floor in the logs


# ------------------------------------------------------------------------------------ likelihoods


def tiny(**settings_):
    from vqtool.families.dynamics.model import DynamicsConfig, DynamicsModel

    torch.manual_seed(0)
    return DynamicsModel(DynamicsConfig(**{"hidden": 8, **settings_})).eval()


def test_importance_weighted_bound_against_enumeration():
    """A discrete latent of one variable with K classes and a uniform prior: log p(y|x) is a sum over K
    decoder outputs. The k-sample bound is below it for every k (in expectation) and reaches it."""
    from vqtool.families.dynamics.model import GaussianOutput

    model = tiny(env="toy", kind="discrete", variables=1, categories=4)
    with torch.no_grad():
        model.decoder[-1].bias.copy_(torch.tensor([0.0, -1.0]))
        model.posterior.weight.mul_(3)  # an imperfect posterior that still reaches every class
    x, y = torch.tensor([0.3, -0.4]), torch.tensor([0.2, 1.0])
    xf = model.features(x)
    with torch.no_grad():
        per_class = torch.stack([GaussianOutput().log_prob(model.decoder(torch.cat([xf, torch.eye(4)[k].expand(2, 4)], 1)),
                                                           y.view(-1, 1)) for k in range(4)], 1)
    exact = torch.logsumexp(per_class, 1) - math.log(4)
    generator = torch.Generator().manual_seed(0)
    one = torch.stack([model.log_likelihood(x, y, 1, generator) for _ in range(400)]).mean(0)
    many = model.log_likelihood(x, y, 4000, generator)
    assert torch.all(one <= exact + 1e-4)
    assert torch.allclose(many, exact, atol=0.02)


def test_closed_form_likelihoods_are_the_formulas():
    gaussian = tiny(env="toy", model="gaussian")
    x, y = torch.tensor([0.1]), torch.tensor([0.7])
    with torch.no_grad():
        mean, raw = gaussian.net(gaussian.features(x))[0]
        from vqtool.families.dynamics.model import soft_bounded

        logvar = soft_bounded(raw)
    hand = -0.5 * (math.log(2 * math.pi) + logvar + (0.7 - mean) ** 2 / logvar.exp())
    assert float(gaussian.log_likelihood(x, y)[0]) == pytest.approx(float(hand), abs=1e-5)
    grid = tiny(env="grid", model="gaussian")
    row = torch.tensor([[*envs.START, 0]])
    nxt = torch.tensor([[0, 1, 1, 2, 6, 3]])
    with torch.no_grad():
        logits = grid.net(grid.features(row)).view(6, 7).log_softmax(-1)
    assert float(grid.log_likelihood(row, nxt)[0]) == pytest.approx(float(logits[torch.arange(6), nxt[0]].sum()), abs=1e-5)


@pytest.mark.parametrize("settings_", [dict(model="mdn"), dict(model="ensemble"), dict(model="cvae"),
                                       dict(model="cvae", flows=2), dict(model="cvae", kind="discrete", prior="learned"),
                                       dict(model="cvae", kind="discrete", relaxed=True)])
def test_grid_models_give_a_distribution_over_grid_states(settings_):
    model = tiny(env="grid", **settings_)
    row = torch.tensor([[*envs.START, 2]])
    drawn = model.sample(row, 50, torch.Generator().manual_seed(0))
    assert drawn.shape == (1, 50, 6) and drawn.min() >= 0 and drawn.max() <= 6
    # the likelihood over all 7^6 states sums to one (exact models) or at most one (the CVAE's bound, in expectation)
    if settings_["model"] != "cvae":
        states = torch.cartesian_prod(*[torch.arange(7)] * 6)
        total = model.log_likelihood(row.expand(len(states), 7), states).exp().sum()
        assert float(total) == pytest.approx(1, abs=1e-3)


@pytest.mark.parametrize("kind", ["gaussian", "mdn", "ensemble"])
def test_grid_samples_follow_the_likelihood(kind):
    """What `sample` draws is what `log_likelihood` scores: frequencies of 20,000 draws against exp(log p)."""
    model = tiny(env="grid", model=kind, hidden=4)
    with torch.no_grad():  # sharpen the random network so that a few states carry most of the mass
        for parameter in model.parameters():
            parameter.mul_(6)
    row = torch.tensor([[*envs.START, 2]])
    drawn = model.sample(row, 20_000, torch.Generator().manual_seed(0))[0]
    states, counts = torch.unique(drawn, dim=0, return_counts=True)
    top = counts.argsort(descending=True)[:10]
    likelihood = model.log_likelihood(row.expand(len(top), 7), states[top]).exp()
    assert torch.allclose(counts[top] / 20_000, likelihood.float(), atol=0.012)


def test_mixture_likelihood_is_the_weighted_sum_of_its_components():
    model = tiny(env="grid", model="mdn", components=3)
    row, nxt = torch.tensor([[*envs.START, 1]]), torch.tensor([[0, 0, 1, 2, 4, 3]])
    with torch.no_grad():
        params = model.net(model.features(row))[0]
        weights = params[:3].softmax(-1)
        parts = params[3:].view(3, 6, 7).log_softmax(-1)
        hand = sum(weights[k] * parts[k, torch.arange(6), nxt[0]].sum().exp() for k in range(3))
    assert float(model.log_likelihood(row, nxt)[0].exp()) == pytest.approx(float(hand), rel=1e-5)


def test_mse_model_predicts_one_state_and_has_no_likelihood():
    model = tiny(env="grid", model="mse")
    row = torch.tensor([[*envs.START, 0]])
    drawn = model.sample(row, 20)
    assert len({tuple(s) for s in drawn[0].tolist()}) == 1
    with pytest.raises(ValueError, match="no likelihood"):
        model.log_likelihood(row, torch.zeros(1, 6))


# ------------------------------------------------------------------------------------ gymnasium


def test_environments_pass_gymnasiums_checker():
    pytest.importorskip("gymnasium")
    from gymnasium.utils.env_checker import check_env

    from vqtool.dynamics import GridEnv, LearnedEnv

    check_env(GridEnv(), skip_render_check=True)
    check_env(LearnedEnv(tiny(env="grid", model="mdn")), skip_render_check=True)


def test_true_environment_follows_the_rules():
    from vqtool.dynamics import GridEnv

    env = GridEnv()
    obs, _ = env.reset(seed=3, options={"state": (0, 0, 0, 1, 6, 6)})
    obs, reward, terminated, truncated, _ = env.step(0)  # into ghost 1
    assert obs.tolist() == [0, 1, 0, 1, 6, 6] and reward == -1 and terminated
    env.reset(seed=3, options={"state": (5, 6, 3, 3, 0, 0)})
    obs, reward, terminated, _, _ = env.step(2)  # to the goal
    assert obs[:2].tolist() == [6, 6] and (reward, terminated) in ((10.0, True), (-1.0, True))
    with pytest.raises(ValueError):
        env.step(7)


def test_learned_env_refuses_a_toy_model():
    from vqtool.dynamics import LearnedEnv
    from vqtool.errors import VqtoolError

    with pytest.raises(VqtoolError, match="gridworld"):
        LearnedEnv(tiny(env="toy"))


# ------------------------------------------------------------------------------------ training and CLI


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """A tiny grid MDN and toy CVAE trained for real through the CLI (seconds)."""
    out = tmp_path_factory.mktemp("dynamics")
    runs = {}
    for env, model in (("grid", "mdn"), ("toy", "cvae")):
        result = run_cli("train", "dynamics", "--env", env, "--model", model, "--hidden", "16", "--steps", "300",
                         "--validate-every", "100", "--samples", "20", "--name", f"{env}-{model}",
                         "--out", out / env, "--quiet")
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        runs[env] = out / env / f"{env}-{model}.safetensors"
    return runs


def test_training_records_the_table_and_selects_by_validation(tiny_runs):
    from vqtool.hub import read_metadata

    meta = read_metadata(tiny_runs["grid"])
    m = meta["metrics"]
    for key in ("test_nll", "test_hellinger", "test_tv", "test_kl_true_model", "test_kl_model_true",
                "test_impossible", "test_deterministic_exact", "floor_hellinger", "reference_true_entropy"):
        assert key in m, key
    assert m["training"]["selected_step"] in (100, 200, 300)
    assert len(m["training"]["curve"]) == 3
    card = tiny_runs["grid"].with_suffix(".md").read_text()
    assert "true system (floor)" in card and "Hellinger" in card
    toy = read_metadata(tiny_runs["toy"])["metrics"]
    assert toy["iw_samples"] == 40 and "reference_best_gaussian_nll" in toy


def test_sample_grid_text_and_json(tiny_runs):
    m = ["-m", tiny_runs["grid"]]
    text = run_cli("dynamics", "sample", *m, "--state", "0,0,1,3,5,3", "--action", "up", "-n", "200", "--seed", "1")
    assert text.returncode == 0, text.stderr.decode()
    lines = [line.split("\t") for line in text.stdout.decode().splitlines()]
    assert sum(int(c) for _, c, _, _ in lines) == 200 and all(len(s.split(",")) == 6 for s, *_ in lines)
    assert sum(float(t) for *_, t in lines) == pytest.approx(1, abs=1e-3)  # every true outcome is listed
    again = run_cli("dynamics", "sample", *m, "--state", "0,0,1,3,5,3", "--action", "up", "-n", "200", "--seed", "1")
    assert again.stdout == text.stdout
    record = json.loads(run_cli("dynamics", "sample", *m, "--state", "0 0 1 3 5 3", "-a", "0", "-n", "50",
                                "--json").stdout)
    assert len(record["samples"]) == 50 and record["action"] == "up"
    assert sum(f["count"] for f in record["frequencies"]) == 50


def test_sample_toy(tiny_runs):
    out = run_cli("dynamics", "sample", "-m", tiny_runs["toy"], "--x", "0.5", "-n", "30", "--seed", "2")
    assert out.returncode == 0 and len(out.stdout.decode().split()) == 30
    record = json.loads(run_cli("dynamics", "sample", "-m", tiny_runs["toy"], "--x", "-0.5", "-n", "5", "--json").stdout)
    assert len(record["samples"]) == 5 and record["x"] == -0.5


@pytest.mark.parametrize("args,needle", [
    (["--state", "0,0,1,1,5,3", "--action", "up"], "wall"),
    (["--state", "0,0,1,3,5,9", "--action", "up"], "outside"),
    (["--state", "0,0,a,3,5,3", "--action", "up"], "six whole numbers"),
    (["--state", "0,0,1,3", "--action", "up"], "6 numbers"),
    (["--state", "0,0,1,3,5,3", "--action", "jump"], "up, down, right or left"),
    (["--state", "0,0,1,3,5,3", "--action", "up", "-n", "0"], "1..1,000,000"),
    (["--state", "0,0,1,3,5,3", "--action", "up", "-n", "99999999"], "1..1,000,000"),
    (["--x", "0.5"], "give --state and --action"),
    (["--state", "0,0,1,3,5,3", "--action", "up", "--argmax"], "--argmax is for grid CVAEs"),
])
def test_bad_grid_input_is_one_line_and_exit_2(tiny_runs, args, needle):
    result = run_cli("dynamics", "sample", "-m", tiny_runs["grid"], *args)
    err = result.stderr.decode()
    assert result.returncode == 2 and needle in err and "Traceback" not in err


def test_bad_toy_input(tiny_runs):
    for args, needle in ((["--x", "3"], "[-1, 1]"), (["--state", "0,0,1,3,5,3", "--action", "up"], "give --x")):
        result = run_cli("dynamics", "sample", "-m", tiny_runs["toy"], *args)
        assert result.returncode == 2 and needle in result.stderr.decode()


def test_eval_remeasures_the_card(tiny_runs):
    result = run_cli("dynamics", "eval", "-m", tiny_runs["toy"], "--samples", "20", "--json")
    assert result.returncode == 0, result.stderr.decode()
    record = json.loads(result.stdout)
    assert record["measured"]["test_nll"] == pytest.approx(record["card"]["test_nll"], abs=1e-6)
    assert record["measured"]["test_hellinger"] == pytest.approx(record["card"]["test_hellinger"], abs=1e-6)


def test_plot_writes_pngs(tmp_path, tiny_runs):
    pytest.importorskip("matplotlib")
    from PIL import Image

    for env in ("toy", "grid"):
        out = tmp_path / f"{env}.png"
        result = run_cli("dynamics", "plot", "-m", tiny_runs[env], "-o", out, "--samples", "50", "--states", "2")
        assert result.returncode == 0, result.stderr.decode()
        assert Image.open(out).size[0] > 300
    mixed = run_cli("dynamics", "plot", "-m", tiny_runs["toy"], "-m", tiny_runs["grid"], "-o", tmp_path / "x.png")
    assert mixed.returncode == 2 and not (tmp_path / "x.png").exists()


def test_training_options_are_checked(tmp_path):
    for args, needle in ((["--env", "maze"], "--env"), (["--model", "gan"], "--model"),
                         (["--latent-kind", "fuzzy"], "--latent-kind"), (["--prior", "cpp"], "--prior")):
        result = run_cli("train", "dynamics", "--out", tmp_path, "--steps", "1", *args)
        assert result.returncode == 2 and needle in result.stderr.decode()


def test_dynamics_trains_under_torchrun(tmp_path):
    from test_distributed import torchrun

    from vqtool.hub import read_metadata

    result = torchrun("-m", "vqtool", "train", "dynamics", "--env", "grid", "--model", "cvae", "--hidden", "8",
                      "--steps", "4", "--batch-size", "16", "--validate-every", "2", "--samples", "10",
                      "--name", "ddp", "--out", tmp_path, "--quiet")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert read_metadata(tmp_path / "ddp.safetensors")["provenance"]["world_size"] == 2
