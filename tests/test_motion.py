"""Motion CVAEs: the CPP KL terms, collapse detection, kinematics, the LTD windows, every output format,
bad inputs, and training under torchrun."""
import json
import math

import numpy as np
import pytest
import torch

from vqtool.cvae import ConditionalLatent, LatentConfig, collapse_report, gaussian_kl
from vqtool.data.motion import LTD_SEED, dense_windows, ltd_windows, parse_motion
from vqtool.errors import VqtoolError
from vqtool.families.motion.skeleton import (NAMES, OFFSETS_MM, PARENTS, bvh_positions, euler_angles, expmap_to_rotmat,
                                             forward_kinematics, rotmat_to_euler, to_bvh)

from conftest import run_cli, synthetic_motion


# ---- the conditional-VAE core ----

def set_head(head, mu, logvar):
    """Make a Gaussian head output constants (zero weights, the values as biases)."""
    with torch.no_grad():
        head.layer.weight.zero_()
        head.layer.bias.copy_(torch.tensor([mu, logvar]))


def test_cpp_kl_matches_a_hand_computation():
    latent = ConditionalLatent(LatentConfig(prior="cpp", latent=1), 2, 2)
    set_head(latent.posterior_head, 0.5, math.log(4.0))  # mu = 0.5, sigma = 2
    set_head(latent.condition_head, 1.0, math.log(0.25))  # mu_c = 1, sigma_c = 0.5
    z, terms = latent.posterior(torch.zeros(3, 2), torch.zeros(3, 2), torch.Generator().manual_seed(0))
    # q(z|x,c) = N(0.5 + 2 * 1, (2 * 0.5)^2) = N(2.5, 1) against the prior q(z_c|c) = N(1, 0.25):
    # log(0.5 / 1) + (1 + 1.5^2) / (2 * 0.25) - 1/2
    assert torch.allclose(terms["kl"], torch.full((3, 1), math.log(0.5) + 3.25 / 0.5 - 0.5), atol=1e-5)
    # the condition's own term, KL(N(1, 0.25) || N(0, 1)) = (0.25 + 1 - 1 - log 0.25) / 2
    assert torch.allclose(terms["condition_kl"], torch.full((3, 1), (0.25 - math.log(0.25)) / 2), atol=1e-5)
    assert torch.allclose(z, 0.5 + 2 * terms["z_c"])  # z = mu + sigma * z_c


def test_cpp_reduces_to_the_standard_kl_when_the_condition_posterior_is_the_standard_normal():
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    zeros = torch.zeros(5, 3)
    sigma = (0.5 * logvar).exp()
    assert torch.allclose(gaussian_kl(mu + sigma * zeros, logvar + zeros, zeros, zeros), gaussian_kl(mu, logvar),
                          atol=1e-6)


def test_gaussian_kl_matches_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    mu_q, lv_q, mu_p, lv_p = torch.tensor([0.3]), torch.tensor([-0.5]), torch.tensor([-0.2]), torch.tensor([0.4])
    z = mu_q + (0.5 * lv_q).exp() * torch.randn(200_000, 1, generator=gen)
    log_q = torch.distributions.Normal(mu_q, (0.5 * lv_q).exp()).log_prob(z)
    log_p = torch.distributions.Normal(mu_p, (0.5 * lv_p).exp()).log_prob(z)
    assert float(gaussian_kl(mu_q, lv_q, mu_p, lv_p)) == pytest.approx(float((log_q - log_p).mean()), abs=0.01)


@pytest.mark.parametrize("prior", ["none", "standard", "cpp", "learned"])
def test_every_prior_samples_and_trains(prior):
    latent = ConditionalLatent(LatentConfig(prior=prior, latent=4, anneal_steps=10), 6, 5)
    z, terms = latent.posterior(torch.randn(3, 6), torch.randn(3, 5))
    drawn = latent.prior(torch.randn(7, 5))
    if prior == "none":
        assert z is None and drawn is None and terms == {}
        return
    assert z.shape == (3, 4) and drawn.shape == (7, 4) and terms["kl"].shape == (3, 4)
    loss, logged = latent.kl_loss(terms, step=4)
    assert logged["beta"] == pytest.approx(0.5) and loss.requires_grad


def test_free_bits_and_collapse_report():
    kl = torch.tensor([[0.0, 0.5, 2.0], [0.0, 0.7, 2.2]])
    latent = ConditionalLatent(LatentConfig(prior="standard", latent=3, anneal_steps=0, free_bits=1.0), 1, 1)
    loss, _ = latent.kl_loss({"kl": kl}, step=0)
    assert float(loss) == pytest.approx(1.0 + 1.0 + 2.1)  # the first two dimensions are lifted to 1 nat
    report = collapse_report(kl)
    assert report["active_dims"] == 2 and report["active_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert collapse_report(torch.zeros(4, 8))["active_dims"] == 0  # a collapsed posterior is seen as one


# ---- kinematics ----

def test_zero_pose_puts_each_joint_at_its_summed_offsets():
    joints = forward_kinematics(torch.zeros(1, 117))[0].double().numpy()
    for joint in range(len(PARENTS)):
        expected, walk = np.zeros(3), joint
        while walk >= 0:
            expected, walk = expected + OFFSETS_MM[walk], PARENTS[walk]
        assert np.allclose(joints[joint], expected, atol=1e-3), NAMES[joint]


def test_a_quarter_turn_of_the_root_turns_the_body():
    frame = torch.zeros(1, 117)
    frame[0, 4] = math.pi / 2  # root rotation about y
    joints = forward_kinematics(frame)[0].double().numpy()
    o = OFFSETS_MM[2]  # the left hip joint hangs off the root: o @ R_y(90°) = (-o_z, o_y, o_x)
    assert np.allclose(joints[2], [-o[2], o[1], o[0]], atol=1e-3)
    assert np.allclose(forward_kinematics(frame, with_root=False)[0], forward_kinematics(torch.zeros(1, 117))[0])


def test_euler_angles_of_a_rotation_about_x():
    rotation = expmap_to_rotmat(torch.tensor([[0.4, 0.0, 0.0]]).double())
    assert torch.allclose(rotmat_to_euler(rotation), torch.tensor([[-0.4, 0.0, 0.0]]).double(), atol=1e-7)
    locked = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]])  # R[0, 2] = 1: gimbal lock
    assert torch.allclose(rotmat_to_euler(locked), torch.tensor([[0.0, -math.pi / 2, 0.0]]), atol=1e-6)
    frames = torch.randn(2, 117)
    assert torch.equal(euler_angles(frames)[:, :6], torch.zeros(2, 6))  # the root is zeroed as in LTD


def test_bvh_plays_back_the_same_skeleton():
    clip = synthetic_motion(20, seed=3)
    text = to_bvh(clip, 0.04)
    assert text.startswith("HIERARCHY") and "Frame Time: 0.040000" in text
    parsed = bvh_positions(text)
    order = []  # the BVH's joint order: depth first, an end site after each leaf

    def walk(joint):
        order.append(joint)
        kids = [i for i, p in enumerate(PARENTS) if p == joint]
        for kid in kids:
            walk(kid)
        if not kids:
            order.append(None)
    walk(0)
    columns = [i for i, j in enumerate(order) if j is not None]
    expected = forward_kinematics(torch.as_tensor(clip)).numpy()[:, [j for j in order if j is not None]]
    assert np.abs(parsed[:, columns] - expected).max() < 0.01  # mm


# ---- data ----

def test_ltd_windows_follow_the_reference_sampler():
    rng = np.random.RandomState(LTD_SEED)  # a fresh RandomState per file, randint(0, frames - 75) eight times
    assert ltd_windows(180) == [rng.randint(0, 105) for _ in range(8)]
    assert ltd_windows(180) == ltd_windows(180)
    assert dense_windows(100) == [0, 10, 20]


def test_the_real_test_split_gives_40_ltd_windows(shared_data):
    from vqtool.data.motion import test_sets

    sets = test_sets(shared_data / "cmu-mocap")
    assert len(sets["ltd"]) == 40 and len(sets["dense"]) > 100
    assert sets["ltd"].windows().shape == (40, 75, 117)


@pytest.mark.parametrize("content,needle", [
    (b"", "empty file"),
    (b"1,2,3\n4,5,6\n", "3 values per frame"),
    (b"1,2\n1,2,3\n", "line 2 has 3 values"),
    (b"1,x,3\n", "not a number"),
    (("0," * 116 + "nan\n").encode(), "NaN or infinity"),
    (b"\xff\xfe\x00", "not a text file"),
])
def test_bad_clips_are_named_errors(content, needle):
    with pytest.raises(VqtoolError, match=needle):
        parse_motion(content, "clip.txt")


# ---- the command line ----

def write_clip(path, lines=120, seed=5):
    np.savetxt(path, synthetic_motion(lines, seed), fmt="%.6f", delimiter=",")
    return path


def test_every_output_format(tmp_path, tiny_motion):
    clip = write_clip(tmp_path / "clip.txt")
    for suffix in (".txt", ".npy", ".png", ".gif", ".bvh"):
        out = tmp_path / f"futures{suffix}"
        result = run_cli("predict-motion", clip, "-m", tiny_motion, "-n", "3", "--frames", "10", "-o", out, "-q")
        assert result.returncode == 0, result.stderr.decode()
    futures = np.load(tmp_path / "futures.npy")
    assert futures.shape == (3, 10, 117) and futures.dtype == np.float32
    text = parse_motion((tmp_path / "futures.txt").read_bytes(), "futures.txt")
    assert np.allclose(text.reshape(3, 10, 117), futures, atol=1e-5)  # future i's frame t on line i * 10 + t
    from PIL import Image

    assert Image.open(tmp_path / "futures.png").size[1] == 3 * 180  # one row per future
    gif = Image.open(tmp_path / "futures.gif")
    assert gif.n_frames == 50 + 10  # the observed frames, then the future
    assert not (tmp_path / "futures.bvh").exists()  # several futures: one file each
    for i in range(3):
        parsed = bvh_positions((tmp_path / f"futures_{i + 1}.bvh").read_text())
        assert parsed.shape[0] == 60


def test_one_future_to_stdout_reads_back_as_a_clip(tmp_path, tiny_motion):
    clip = write_clip(tmp_path / "clip.txt")
    result = run_cli("predict-motion", "-", "-m", tiny_motion, "-n", "1", "-o", "-", input=clip.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    future = parse_motion(result.stdout, "stdout")
    assert future.shape == (25, 117)
    again = run_cli("predict-motion", "-", "-m", tiny_motion, "-n", "1", "-o", "-", input=clip.read_bytes())
    assert again.stdout == result.stdout  # the same seed gives the same future
    other = run_cli("predict-motion", "-", "-m", tiny_motion, "-n", "1", "-o", "-", "--seed", "7",
                    input=clip.read_bytes())
    assert other.stdout != result.stdout


def test_futures_differ_and_json_describes_them(tmp_path, tiny_motion):
    clip = write_clip(tmp_path / "clip.txt")
    result = run_cli("predict-motion", clip, "-m", tiny_motion, "-n", "4", "-o", tmp_path / "f.npy", "--json")
    assert result.returncode == 0, result.stderr.decode()
    record = json.loads(result.stdout)
    assert record["futures"] == 4 and len(record["samples"]) == 4 and record["apd_mm"] > 0
    futures = np.load(tmp_path / "f.npy")
    assert np.abs(futures[0] - futures[1]).max() > 1e-4


@pytest.mark.parametrize("args,needle", [
    (["-n", "0"], "--samples"),
    (["-n", "100000"], "--samples"),
    (["--frames", "0"], "--frames"),
    (["-o", "out.mp4"], "unknown output format"),
])
def test_bad_options_are_usage_errors(tmp_path, tiny_motion, args, needle):
    clip = write_clip(tmp_path / "clip.txt")
    result = run_cli("predict-motion", clip, "-m", tiny_motion, *args, cwd=tmp_path)
    assert result.returncode == 2 and needle in result.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.txt"]


def test_bad_clips_fail_alone_with_one_line_each(tmp_path, tiny_motion):
    good = write_clip(tmp_path / "good.txt")
    (tmp_path / "short.txt").write_bytes(b"\n".join([b",".join([b"0"] * 117)] * 30))
    (tmp_path / "columns.txt").write_text("1,2,3\n" * 200)
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "nan.txt").write_text(("0," * 116 + "inf\n") * 200)
    out = tmp_path / "out"
    result = run_cli("predict-motion", good, tmp_path / "short.txt", tmp_path / "columns.txt", tmp_path / "empty.txt",
                     tmp_path / "nan.txt", "-m", tiny_motion, "-o", f"{out}/")
    err = result.stderr.decode()
    assert result.returncode == 1
    assert "short.txt: 30 frames; the model needs at least 99" in err
    assert "columns.txt: 3 values per frame" in err and "empty.txt: empty file" in err
    assert "nan.txt: frame 1, value 117 is inf" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["good.futures.txt"]  # the rest of the batch still ran


def test_library_api(tiny_motion):
    import vqtool

    net = vqtool.load(str(tiny_motion))
    futures = net.predict(synthetic_motion(120), samples=2, frames=5, seed=1)
    assert futures.shape == (2, 5, 117)
    assert np.array_equal(futures, net.predict(synthetic_motion(120), samples=2, frames=5, seed=1))


def test_card_has_the_tables(tiny_motion):
    card = tiny_motion.with_suffix(".md").read_text()
    assert "LTD's test windows" in card and "best of 10" in card and "active dims" in card


def test_training_refuses_a_test_split(tmp_path, motion_folder):
    result = run_cli("train", "motion", "--data", motion_folder / "test", "--out", tmp_path, "--steps", "1")
    assert result.returncode != 0 and "test split" in result.stderr.decode()


def test_motion_trains_under_torchrun(tmp_path, motion_folder):
    from test_distributed import torchrun

    from vqtool.hub import read_metadata

    result = torchrun("-m", "vqtool", "train", "motion", "--data", motion_folder, "--name", "ddp", "--out", tmp_path,
                      "--steps", "3", "--batch-size", "8", "--hidden", "16", "--width", "8", "--latent", "4", "--quiet")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    meta = read_metadata(tmp_path / "ddp.safetensors")
    assert meta["provenance"]["world_size"] == 2 and meta["architecture"] == "motion-cvae"


def test_format_option_and_folders(tmp_path, tiny_motion):
    clips = tmp_path / "clips"
    clips.mkdir()
    write_clip(clips / "a.txt", seed=1)
    np.save(clips / "b.npy", synthetic_motion(120, seed=2))
    result = run_cli("predict-motion", clips, "-m", tiny_motion, "-n", "2", "--format", "gif", "-o", tmp_path / "out",
                     "-q")
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.futures.gif", "b.futures.gif"]
    piped = run_cli("predict-motion", clips / "a.txt", "-m", tiny_motion, "-n", "2", "--format", "npy", "-o", "-")
    assert piped.returncode == 0 and np.load(__import__("io").BytesIO(piped.stdout)).shape == (2, 25, 117)
    refused = run_cli("predict-motion", clips / "a.txt", "-m", tiny_motion, "-n", "2", "--format", "bvh", "-o", "-")
    assert refused.returncode == 2 and "one file each" in refused.stderr.decode()


def test_balanced_batches_draw_each_action_equally():
    from vqtool.data.motion import MotionSet
    from vqtool.families.motion.model import MotionConfig
    from vqtool.families.motion.task import MotionTask

    clips = [np.zeros((200, 117), np.float32), np.zeros((80, 117), np.float32)]
    windows = MotionSet(clips, [(0, s) for s in range(120)] + [(1, s) for s in range(5)],
                        actions=["slow"] * 120 + ["rare"] * 5)
    task = MotionTask(MotionConfig(channels=[6, 7], balance_actions=True), windows, {}, None, {})
    drawn = task.balanced(4000, torch.Generator().manual_seed(0))
    rare = sum(windows.actions[i] == "rare" for i in drawn)
    assert 1800 < rare < 2200 and set(drawn) >= set(range(120, 125))


def test_validation_is_new_recordings_and_balanced(shared_data):
    from collections import Counter

    from vqtool.data.motion import VALIDATION_PER_ACTION, motion_splits

    train, validation, info = motion_splits(shared_data / "cmu-mocap")
    assert {"basketball_5.txt", "walking_5.txt", "running_5.txt"} <= set(info["validation_files"])
    assert max(Counter(validation.actions).values()) <= VALIDATION_PER_ACTION
    held = {id(c) for c in validation.clips}
    assert not held & {id(c) for c in train.clips}  # no clip (so no frame) in both


def test_the_most_futures_with_a_summary(tmp_path, tiny_motion):
    """-n at its limit with --json: the pairwise summary of 1,000 futures stays small (a distance
    matrix, not the 11 GB of pairwise differences an earlier version built)."""
    clip = write_clip(tmp_path / "clip.txt")
    result = run_cli("predict-motion", clip, "-m", tiny_motion, "-n", "1000", "-o", tmp_path / "f.npy", "--json")
    assert result.returncode == 0, result.stderr.decode()
    record = json.loads(result.stdout)
    assert len(record["samples"]) == 1000 and np.load(tmp_path / "f.npy").shape == (1000, 25, 117)
