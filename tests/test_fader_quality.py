"""The shipped Fader Networks keep what their cards claim, on a slice of the held-out faces."""
from pathlib import Path

import pytest

from vqtool import load
from vqtool.data.attributes import Attribute, load_attribute_set, read_name_list
from vqtool.families.fader.task import evaluate_fader

from conftest import run_cli

DATA = {"faces-smile": ("smiles/smiles.zip", None), "faces-utk": ("utkface/utkface-64.zip", "utkface/labels.csv")}
SLICE = 300


def faces_of(net, shared_data, limit: int, held_out: bool = True):
    """`limit` faces of the model's data, with its attributes: from test.txt, or from the rest (training)."""
    zip_name, labels = DATA[net.name]
    path = shared_data / zip_name
    attributes = [Attribute.parse(name if rule == name else f"{name}={rule}")
                  for name, rule in zip(net.config.attributes, net.config.rules)]
    test = read_name_list(path.parent / "test.txt")
    return load_attribute_set(path, attributes, shared_data / labels if labels else None,
                              "L" if net.config.channels == 1 else "RGB", net.config.image_size, limit=limit,
                              **({"select": test} if held_out else {"exclude": test}))


@pytest.fixture(scope="module", params=sorted(DATA))
def shipped(request, shared_data):
    """(model, judge, 300 held-out faces with their true attributes)."""
    net = load(request.param, device="cpu")
    held_out = faces_of(net, shared_data, SLICE)
    judge = load(Path(net.metadata["provenance"]["judge"]["name"]).stem, device="cpu")  # trained in runs/, shipped
    assert judge.sha256 == net.metadata["provenance"]["judge"]["sha256"]  # the shipped judge is the one measured
    return net, judge, held_out


def test_the_card_carries_swap_accuracy_and_psnr_on_the_whole_test_split(shipped):
    net, _, _ = shipped
    metrics, provenance = net.metadata["metrics"], net.metadata["provenance"]
    assert provenance["eval_split"] == "test.txt" and metrics["eval_images"] > 1000
    for name in net.attributes:
        assert 0 <= metrics[f"swap_accuracy_{name}"] <= 1
    card = net.path.with_suffix(".md").read_text()
    assert "swap_accuracy" in card and "psnr_db" in card


def test_recorded_numbers_hold_on_a_test_slice(shipped):
    net, judge, held_out = shipped
    recorded = net.metadata["metrics"]
    measured = evaluate_fader(net, held_out, judge)
    assert abs(measured["psnr_db"] - recorded["psnr_db"]) < 0.6, (measured["psnr_db"], recorded["psnr_db"])
    for name in net.attributes:
        # 300 faces: a binomial standard error of at most 0.03 on each share
        assert measured[f"swap_accuracy_{name}"] > recorded[f"swap_accuracy_{name}"] - 0.08, (name, measured)
        assert measured[f"reader_accuracy_{name}"] > 0.75


def test_the_independent_judge_holds_on_a_test_slice(shipped, shared_data):
    """A probe fitted on fewer training faces (600, for time) than the card's (4,000), on 150 test faces: the
    card's independent numbers are reproduced within what those sizes allow."""
    from vqtool.families.fader.task import FeatureProbe, flipped, probe_metrics

    net, _, held_out = shipped
    train = faces_of(net, shared_data, 600, held_out=False)
    faces, truth = held_out.images[::2], held_out.labels[::2].float()
    probe = FeatureProbe(train, net.attributes, faces=600)
    decoded = lambda alphas: net.to_uint8(net.decode(net.encode(net.from_uint8(faces)), alphas))  # noqa: E731
    edits = [decoded(flipped(truth, i)) for i in range(len(net.attributes))]
    measured = probe_metrics(net, probe, faces.numpy(), decoded(truth), edits, truth.numpy() > 0.5)
    recorded = net.metadata["metrics"]
    for name in net.attributes:
        assert measured[f"probe_accuracy_{name}_originals"] > 0.7, measured
        assert abs(measured[f"probe_swap_accuracy_{name}"] - recorded[f"probe_swap_accuracy_{name}"]) < 0.15, (
            name, measured, recorded)
        assert 0 < measured[f"fd_real_{name}"] < measured[f"fd_reconstructions_{name}"]  # the blur shows in FD


def test_fade_edits_a_held_out_face_through_the_cli(shipped, tmp_path):
    from PIL import Image

    net, judge, held_out = shipped
    index = int(held_out.labels[:, 0].argmin())  # a face without the first attribute
    Image.fromarray(held_out.images[index].numpy().squeeze()).save(tmp_path / "face.png")
    name = net.attributes[0]
    result = run_cli("fade", tmp_path / "face.png", f"--{name}", "1", "-m", net.name, "-o", tmp_path / "with.png")
    assert result.returncode == 0, result.stderr.decode()
    assert Image.open(tmp_path / "with.png").size == (net.config.image_size,) * 2
