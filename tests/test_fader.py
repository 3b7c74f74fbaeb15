"""Fader Networks: the adversarial schedule, attribute injection, the `fade` command on own photos."""
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vqtool.data.attributes import Attribute, attribute_splits, load_attribute_set
from vqtool.errors import VqtoolError
from vqtool.families.fader.model import (FaderConfig, FaderNetwork, adversarial_weight, attribute_maps, face_box,
                                         paste_edit, pasted_faces)
from vqtool.hub import load, read_metadata, sha256_file

from conftest import run_cli, synthetic_face


def test_adversarial_weight_ramps_linearly_from_zero_then_holds():
    config = FaderConfig(attributes=["a"], adversarial_weight=1e-3, ramp_steps=1000)
    assert adversarial_weight(config, 0) == 0
    assert adversarial_weight(config, 250) == pytest.approx(2.5e-4)
    assert adversarial_weight(config, 1000) == pytest.approx(1e-3)
    assert adversarial_weight(config, 50_000) == pytest.approx(1e-3)


def test_the_ramp_follows_the_steps_trained_and_resumes_with_them(tmp_path, face_folder):
    args = ["train", "fader", "--data", face_folder, "--attributes", "smile", "--name", "r", "--out", tmp_path,
            "--batch-size", "8", "--image-size", "32", "--widths", "4,8", "--ramp-steps", "20", "--quiet"]
    assert run_cli(*args, "--steps", "6").returncode == 0
    assert run_cli(*args, "--steps", "10", "--resume").returncode == 0
    net = load(str(tmp_path / "r.safetensors"))
    assert int(net.steps_trained) == 10
    lambdas = [json.loads(line)["lambda"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lambdas[-1] == pytest.approx(1e-3 * (6 + 7 + 8 + 9) / 4 / 20)  # mean of the resumed steps 7-10


def test_attributes_reach_every_decoder_layer_as_pairs():
    maps = attribute_maps(torch.tensor([[0.25, 1.0]]), 3, 5)
    assert maps.shape == (1, 4, 3, 5)
    assert torch.allclose(maps[0, :, 0, 0], torch.tensor([0.75, 0.25, 0.0, 1.0]))
    net = FaderNetwork(FaderConfig(attributes=["a", "b"], channels=1, image_size=32, widths=[8, 16, 32]))
    seen = []
    for layer in net.decoder:
        layer.register_forward_hook(lambda module, args, out: seen.append((args[0].shape, out.shape)))
    latent = net.encode(torch.rand(3, 1, 32, 32))
    assert latent.shape == (3, 32, 4, 4)
    out = net.eval().decode(latent, torch.tensor([[0.0, 1.0]] * 3))
    assert out.shape == (3, 1, 32, 32) and 0 <= out.min() and out.max() <= 1
    assert [s[0][1] for s in seen] == [32 + 4, 16 + 4, 8 + 4]  # every layer: its input + 2 maps per attribute
    assert [s[1][-1] for s in seen] == [8, 16, 32]
    other = net.decode(latent, torch.tensor([[1.0, 1.0]] * 3))
    assert not torch.allclose(out, other)  # alpha reaches the pixels


def test_each_player_is_trained_only_on_its_own_objective():
    net = FaderNetwork(FaderConfig(attributes=["a"], channels=1, image_size=16, widths=[4, 8]))
    images, labels = torch.rand(4, 1, 16, 16), torch.tensor([[0.0], [1.0], [0.0], [1.0]])
    out = net(images, labels)
    torch.nn.functional.binary_cross_entropy_with_logits(out["fooled"], 1 - labels).backward()
    assert all(p.grad is None for p in net.discriminator.parameters())
    assert net.encoder[0].weight.grad is not None
    net.zero_grad()
    out = net(images, labels)
    torch.nn.functional.binary_cross_entropy_with_logits(out["judged"], labels).backward()
    assert net.encoder[0].weight.grad is None and net.discriminator[1].weight.grad is not None
    net.zero_grad()
    out = net(images, labels)
    torch.nn.functional.binary_cross_entropy_with_logits(out["guided"], out["targets"]).backward()
    assert all(p.grad is None for p in net.reader.parameters())  # the guidance trains the decoder, not the reader
    assert net.decoder[0][0].weight.grad is not None and net.reader.training
    assert int(net.steps_trained) == 3


@settings(max_examples=12, deadline=None)
@given(st.floats(0.05, 3.0), st.integers(0, 2 ** 16))
def test_a_robust_reader_trains_on_faces_attacked_within_its_radius(radius, seed):
    torch.manual_seed(seed)
    net = FaderNetwork(FaderConfig(attributes=["a"], channels=1, image_size=16, widths=[4, 8], reader_width=4,
                                   reader_robustness=radius, ramp_steps=10))
    images, labels = torch.rand(6, 1, 16, 16), torch.tensor([[0.0], [1.0]] * 3)
    assert net.attacked(images, labels).equal(images)  # the radius ramps up from 0, like lambda_E
    net.steps_trained.fill_(10)
    attacked = net.attacked(images, labels)
    assert attacked.min() >= 0 and attacked.max() <= 1 and not attacked.requires_grad
    assert ((attacked - images).flatten(1).norm(dim=1) <= radius * (1 + 1e-4)).all()
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    with torch.no_grad():
        net.reader.eval()
        assert bce(net.reader_logits(attacked), labels) > bce(net.reader_logits(images), labels)
    net.train()
    out = net(images, labels)
    assert all(p.grad is None for p in net.reader.parameters()) and net.reader.training  # the attack trains nothing
    bce(out["read"], labels).backward()
    assert net.reader.net[0].weight.grad is not None and net.encoder[0].weight.grad is None


@pytest.mark.parametrize("kind", ["matching", "realism"])
def test_the_patch_critic_and_the_decoder_train_only_on_their_own_objectives(kind):
    net = FaderNetwork(FaderConfig(attributes=["a"], channels=1, image_size=16, widths=[4, 8], critic_weight=0.1,
                                   critic_width=4, guidance_weight=0, critic_kind=kind))
    images, labels = torch.rand(4, 1, 16, 16), torch.tensor([[0.0], [1.0], [0.0], [1.0]])
    out = net(images, labels)
    assert out["critic_real"].shape == (4, 1, 2, 2)  # patch verdicts
    # a realism critic sees no attributes and has the reconstructions and the edits as fakes
    assert net.critic[0].in_channels == (3 if kind == "matching" else 1)
    assert len(out["critic_fake"]) == (4 if kind == "matching" else 8)
    assert len(out["critic_fooled"]) == len(out["critic_fake"])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    bce(out["critic_fooled"], torch.ones_like(out["critic_fooled"])).backward()
    assert all(p.grad is None for p in net.critic.parameters()) and net.decoder[0][0].weight.grad is not None
    net.zero_grad()
    out = net(images, labels)
    loss = sum(bce(out[k], torch.full_like(out[k], v)) for k, v in
               (("critic_real", 1.0), ("critic_mismatched", 0.0), ("critic_fake", 0.0)) if k in out)
    loss.backward()
    assert all(p.grad is None for p in [*net.encoder.parameters(), *net.decoder.parameters()])
    assert net.critic[0].weight.grad is not None


def test_a_fader_with_a_critic_trains_and_edits(face_folder, tmp_path):
    result = run_cli("train", "fader", "--data", face_folder, "--attributes", "smile", "--name", "critic",
                     "--out", tmp_path, "--steps", "40", "--batch-size", "16", "--image-size", "32",
                     "--widths", "8,16,32", "--critic", "0.1", "--guidance", "0", "--ramp-steps", "20",
                     "--probe-faces", "0", "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    net = load(str(tmp_path / "critic.safetensors"))
    assert net.config.critic_weight == 0.1 and hasattr(net, "critic")
    face = torch.rand(1, 1, 32, 32)
    assert net.edit(face, {"smile": 1.0}).shape == (1, 1, 32, 32)


@given(st.sampled_from(["smile", "male=gender:male", "young=age<30", "old=age>=60", "x_1=col:Yes", "a=b<=2.5"]))
def test_attribute_rules_round_trip(spec):
    attribute = Attribute.parse(spec)
    assert attribute.name == spec.split("=")[0]
    assert Attribute.parse(f"{attribute.name}={attribute.rule}" if attribute.column else attribute.rule) == attribute


def test_attribute_rules_read_a_labels_table():
    row = {"file": "x.jpg", "age": "29", "gender": "male", "glasses": "1"}
    assert Attribute.parse("young=age<30").holds("x.jpg", row)
    assert not Attribute.parse("young=age<29").holds("x.jpg", row)
    assert Attribute.parse("male=gender:male").holds("x.jpg", row)
    assert Attribute.parse("glasses").holds("x.jpg", row)
    assert Attribute.parse("smile").holds("smile/1.jpg", None) and not Attribute.parse("smile").holds("neutral/1.jpg", None)
    with pytest.raises(VqtoolError, match="no column 'hair'"):
        Attribute.parse("dark=hair:black").holds("x.jpg", row)
    with pytest.raises(VqtoolError, match="bad attribute"):
        Attribute.parse("young=age~30")


def test_an_attribute_that_never_varies_is_refused(face_folder):
    with pytest.raises(VqtoolError, match="never true"):
        load_attribute_set(face_folder, [Attribute.parse("glasses")], mode="L")


def test_held_out_faces_are_never_trained_on(tiny_fader, face_folder):
    provenance = read_metadata(tiny_fader)["provenance"]
    assert provenance["train_items"] == 96 and provenance["eval_split"] == "test.txt"
    assert provenance["attributes"] == {"smile": "smile"}


def test_a_validation_list_never_lets_the_test_split_into_training(face_folder, tmp_path):
    validation = tmp_path / "val.txt"
    validation.write_text("smile/001.png\nneutral/001.png\n")  # not in test.txt (every fifth face)
    train, held_out, info = attribute_splits(face_folder, ["smile"], holdout=validation)
    assert len(held_out) == 2 and len(train) == 120 - 24 - 2
    assert info["train_split"] == "all but test.txt and val.txt" and info["eval_split"] == "val.txt"


def test_tiny_fader_card_has_swap_accuracy_and_psnr(tiny_fader):
    metrics = read_metadata(tiny_fader)["metrics"]
    for key in ("psnr_db", "swap_accuracy_smile", "slider_smile_judge_probability", "reader_accuracy_smile"):
        assert key in metrics
    assert metrics["eval_images"] == 24 and metrics["psnr_db"] > 15
    card = tiny_fader.with_suffix(".md").read_text()
    assert "swap_accuracy_smile" in card and "judge" in card


def test_remeasure_adds_the_independent_judge_and_keeps_the_weights(tiny_fader, face_folder, tmp_path):
    from safetensors.torch import load_file

    result = run_cli("train", "fader", "--data", face_folder, "--attributes", "smile", "--name", "again",
                     "--image-size", "32", "--remeasure", tiny_fader, "--probe-faces", "60", "--out", tmp_path,
                     "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    before, after = read_metadata(tiny_fader), read_metadata(tmp_path / "again.safetensors")
    old, new = load_file(str(tiny_fader)), load_file(str(tmp_path / "again.safetensors"))
    assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)
    assert after["config"] == before["config"] and after["name"] == "again"
    metrics = after["metrics"]
    assert {k: metrics[k] for k in before["metrics"]} == before["metrics"]  # same weights, same faces: same numbers
    assert 0.5 <= metrics["probe_accuracy_smile_originals"] <= 1  # cartoon smiles: a probe reads them
    assert 0 <= metrics["probe_swap_accuracy_smile"] <= 1
    assert 0 < metrics["fd_real_smile"] and metrics["fd_edited_over_real_smile"] > 0
    record = after["provenance"]["remeasured"][-1]
    assert record["from_sha256"] == sha256_file(tiny_fader) and "probe_swap_accuracy_smile" in record["added"]
    assert record["changed"] == [] and after["provenance"]["steps"] == before["provenance"]["steps"]
    assert "60 training faces" in after["provenance"]["independent_judge"]
    card = (tmp_path / "again.md").read_text()
    assert "re-measured" in card and "Independent judge" in card and "fd_edited_smile" in card


def test_a_card_shows_the_numbers_of_the_model_it_would_replace(tiny_fader, face_folder, tmp_path):
    """`--compare-with`: the old checkpoint's held-out numbers sit beside the new one's, row by row, when both
    were measured on the same split; the held-out split of a re-measure is the one it measured on."""
    result = run_cli("train", "fader", "--data", face_folder, "--attributes", "smile", "--name", "again",
                     "--image-size", "32", "--remeasure", tiny_fader, "--probe-faces", "0", "--out", tmp_path,
                     "--compare-with", tiny_fader, "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    before, after = read_metadata(tiny_fader), read_metadata(tmp_path / "again.safetensors")
    other = after["provenance"]["compared_with"]
    assert other["sha256"] == sha256_file(tiny_fader) and other["metrics"] == before["metrics"]
    assert after["provenance"]["eval_split"] == before["provenance"]["eval_split"]
    card = (tmp_path / "again.md").read_text()
    assert f"| this model | `{before['name']}` |" in card
    psnr = before["metrics"]["psnr_db"]
    assert f"| psnr_db | {psnr} | {psnr} |" in card  # same weights: the same number twice
    result = run_cli("train", "fader", "--data", face_folder, "--attributes", "smile", "--name", "never",
                     "--image-size", "32", "--widths", "8,16,32", "--probe-faces", "0", "--out", tmp_path / "never",
                     "--compare-with", "no-such-model", "--quiet")
    assert result.returncode == 1 and "no-such-model" in result.stderr.decode()  # before any training
    assert "Traceback" not in result.stderr.decode() and not (tmp_path / "never" / "never.safetensors").exists()


def test_frechet_distance_matches_the_matrix_square_root_formula():
    from scipy import linalg

    from vqtool.evaluation import frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(200, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 1
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a + cov_b - 2 * linalg.sqrtm(cov_a @ cov_b).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-6)
    assert abs(frechet_distance(a, a)) < 1e-8


# --- the command line --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> tuple:
    """A 96x64 colour 'photo' with a face at (40, 10, 48, 48)."""
    folder = tmp_path_factory.mktemp("photo")
    canvas = np.full((64, 96, 3), 90, np.uint8)
    canvas[:, :, 1] = np.arange(96)[None, :]  # texture outside the face that must survive --paste
    face = Image.fromarray(synthetic_face(True, size=48, seed=3, colour=True))
    canvas[10:58, 40:88] = np.asarray(face)
    path = folder / "photo.jpg"
    Image.fromarray(canvas).save(path, quality=95)
    return path, (40, 10, 48, 48)


def test_fade_writes_a_model_sized_face(tiny_fader, photo, tmp_path):
    out = tmp_path / "smiling.png"
    result = run_cli("fade", photo[0], "--smile", "0.7", "-m", tiny_fader, "-o", out, "--json")
    assert result.returncode == 0, result.stderr.decode()
    record = json.loads(result.stdout)
    assert record["set"] == {"smile": 0.7} and set(record["read"]) == {"smile"}
    assert record["crop"] == [16, 0, 64, 64]  # the default: centred largest square
    assert Image.open(out).size == (32, 32) and Image.open(out).mode == "L"  # colour in, grayscale model out


def test_sliders_change_the_face_in_order(tiny_fader, photo, tmp_path):
    outputs = []
    for value in ("0", "1"):
        out = tmp_path / f"{value}.png"
        assert run_cli("fade", photo[0], f"--smile={value}", "-m", tiny_fader, "--crop", "40,10,48,48",
                       "-o", out).returncode == 0
        outputs.append(np.asarray(Image.open(out), dtype=np.float64))
    assert np.abs(outputs[0] - outputs[1]).mean() > 1


def test_paste_keeps_the_photo_outside_the_face(tiny_fader, photo, tmp_path):
    out = tmp_path / "pasted.png"
    result = run_cli("fade", photo[0], "--smile", "0", "-m", tiny_fader, "--crop", "40,10,48,48", "--paste", "-o", out)
    assert result.returncode == 0, result.stderr.decode()
    original = np.asarray(Image.open(photo[0]).convert("RGB"), dtype=np.int16)
    pasted = np.asarray(Image.open(out), dtype=np.int16)
    assert pasted.shape == original.shape
    outside = np.ones(original.shape[:2], bool)
    outside[10:58, 40:88] = False
    assert np.array_equal(pasted[outside], original[outside])
    assert np.abs(pasted[10:58, 40:88] - original[10:58, 40:88]).mean() > 0.5


def test_paste_helpers_feather_the_change_to_zero_at_the_border():
    photo = Image.new("RGB", (40, 30), (100, 100, 100))
    edited, kept = np.full((16, 16, 1), 200, np.uint8), np.full((16, 16, 1), 100, np.uint8)
    out = paste_edit(photo, (5, 5, 20, 20), edited, kept).astype(int)
    assert out[15, 15, 0] == 200 and abs(out[5, 5, 0] - 100) < 15 and out[0, 0, 0] == 100
    assert face_box(40, 30, None) == (5, 0, 30, 30)
    with pytest.raises(VqtoolError, match="does not lie inside"):
        face_box(40, 30, (30, 0, 20, 20), "p.jpg")
    with pytest.raises(VqtoolError, match="too small"):
        face_box(10, 10, None, "tiny.png")


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))
def test_pasted_faces_add_the_edit_to_the_original_as_paste_does(original, edited, reconstructed):
    faces = np.full((2, 16, 16, 1), original, np.uint8)
    out = pasted_faces(faces, np.full_like(faces, edited), np.full_like(faces, reconstructed))
    assert out.dtype == np.uint8 and out.shape == faces.shape
    assert out[0, 8, 8, 0] == np.clip(original + edited - reconstructed, 0, 255)  # the whole change inside
    assert abs(int(out[0, 0, 0, 0]) - original) <= abs(edited - reconstructed) / 2  # feathered at the border
    assert pasted_faces(faces, faces, faces).tobytes() == faces.tobytes()
    photo = paste_edit(Image.fromarray(faces[0, :, :, 0]), (0, 0, 16, 16), np.full((16, 16, 1), edited, np.uint8),
                       np.full((16, 16, 1), reconstructed, np.uint8))
    assert np.abs(photo[:, :, 0].astype(int) - out[0, :, :, 0]).max() <= 1  # `fade --paste` at the model's size


def test_swap_metrics_count_the_flipped_verdicts():
    from vqtool.families.fader.task import swap_metrics

    truth, verdict = np.array([True, True, False, False]), np.array([False, True, True, True])
    assert swap_metrics("probe_swap_accuracy_smile_pasted", truth, verdict) == {
        "probe_swap_accuracy_smile_pasted": 0.75, "probe_swap_accuracy_smile_pasted_adding": 1.0,
        "probe_swap_accuracy_smile_pasted_removing": 0.5}


def test_grid_has_original_reconstruction_then_the_steps(tiny_fader, photo, tmp_path):
    out = tmp_path / "grid.png"
    result = run_cli("fade", photo[0], photo[0], "-m", tiny_fader, "--grid", "smile=0:1:5", "-o", out)
    assert result.returncode == 0, result.stderr.decode()
    width, height = Image.open(out).size
    assert (width, height) == (7 * 34 + 2, 2 * 34 + 2)  # 7 columns, 2 rows of 32-pixel faces, 2-pixel gutters


def test_fade_pipes_through_stdin_and_stdout(tiny_fader, photo):
    result = run_cli("fade", "-", "--smile", "1", "-m", tiny_fader, "-o", "-", input=photo[0].read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout[:8] == b"\x89PNG\r\n\x1a\n" and b"faded 1" in result.stderr


def test_an_unknown_attribute_lists_the_valid_ones(tiny_fader, photo, tmp_path):
    result = run_cli("fade", photo[0], "--beard", "1", "-m", tiny_fader, "-o", tmp_path / "x.png")
    assert result.returncode == 2 and b"valid: smile" in result.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--smile", "3"], b"outside the model's range -0.5..1.5"),
    (["--smile", "lots"], b"not a number"),
    (["--grid", "smile=0:1"], b"NAME=START:STOP:COUNT"),
    (["--crop", "1,2,3"], b"X,Y,W,H"),
    (["--grid", "smile=0:1:3", "--paste"], b"leave out --paste"),
])
def test_bad_slider_arguments_are_usage_errors(tiny_fader, photo, tmp_path, args, message):
    result = run_cli("fade", photo[0], *args, "-m", tiny_fader, "-o", tmp_path / "x.png")
    assert result.returncode == 2 and message in result.stderr, result.stderr.decode()
    assert not list(tmp_path.iterdir())


def test_bad_images_fail_one_line_each_without_output(tiny_fader, photo, tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    Image.new("RGB", (8, 8)).save(tmp_path / "tiny.png")
    out = tmp_path / "out"
    result = run_cli("fade", tmp_path / "notes.jpg", tmp_path / "tiny.png", photo[0], "--smile", "1",
                     "-m", tiny_fader, "-o", out)
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert any("notes.jpg: not an image" in line for line in lines)
    assert any("tiny.png: face region 8x8 is too small" in line for line in lines)
    assert "Traceback" not in result.stderr.decode()
    assert sorted(p.name for p in out.iterdir()) == ["photo.faded.png"]  # the good one still written


def test_crop_outside_the_photo_is_an_error_naming_the_file(tiny_fader, photo, tmp_path):
    result = run_cli("fade", photo[0], "--smile", "1", "-m", tiny_fader, "--crop", "60,10,48,48",
                     "-o", tmp_path / "x.png")
    assert result.returncode == 1 and b"photo.jpg: crop 60,10,48,48 does not lie inside the 96x64 image" in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_a_non_face_image_still_gets_an_output(tiny_fader, tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    result = run_cli("fade", tmp_path / "noise.png", "--smile", "1", "-m", tiny_fader)
    assert result.returncode == 0 and (tmp_path / "noise.faded.png").is_file()


def test_models_info_lists_the_attributes(tiny_fader):
    result = run_cli("models", "info", tiny_fader)
    assert result.returncode == 0 and b"attributes" in result.stdout and b"smile" in result.stdout
