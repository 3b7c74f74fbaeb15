import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path | None:
    """../shared/data beside the checkout, or $VQTOOL_DATA."""
    path = Path(os.environ.get("VQTOOL_DATA", ROOT.parent / "shared" / "data"))
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = data_dir()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but the shared data is missing (set VQTOOL_DATA or put ../shared/data beside the clone)")
        pytest.skip("shared data not found (set VQTOOL_DATA)")
    return path


def run_cli(*args, input: bytes | None = None, cwd=None, env=None) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "vqtool", *map(str, args)], input=input, capture_output=True,
                          cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=300)


def synthetic_images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """Discs of a few colours on a few backgrounds: learnable in seconds by a tiny model."""
    rng = np.random.default_rng(seed)
    palette = np.array([[230, 40, 40], [40, 200, 60], [50, 60, 220], [240, 230, 200], [30, 30, 30]])
    y, x = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        cx, cy, r = rng.uniform(0.2, 0.8, 3)
        colour, background = palette[rng.choice(len(palette), 2, replace=False)]
        mask = ((x - cx) ** 2 + (y - cy) ** 2 < (r / 2) ** 2)[..., None]
        images.append(np.where(mask, colour, background).astype(np.uint8))
    return np.stack(images)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("blobs")
    for label in ("a", "b"):
        (folder / label).mkdir()
    for i, array in enumerate(synthetic_images(96)):
        Image.fromarray(array).save(folder / ("a" if i % 2 else "b") / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, image_folder) -> Path:
    """A tiny VQ-VAE trained for real by `vqtool train vqvae` (a few seconds)."""
    out = tmp_path_factory.mktemp("tiny")
    result = run_cli("train", "vqvae", "--data", image_folder, "--eval-data", image_folder, "--name", "tiny",
                     "--out", out, "--steps", "800", "--batch-size", "16", "--hidden", "32", "--res-hidden", "16",
                     "--embedding-dim", "8", "--codes", "32", "--lr", "2e-3", "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    return out / "tiny.safetensors"


@pytest.fixture(scope="session")
def prior_checkpoint(tmp_path_factory, tiny_checkpoint, image_folder):
    """A tiny prior trained for real by `vqtool train prior` on the tiny VQ-VAE's codes."""
    out = tmp_path_factory.mktemp("prior")
    result = run_cli("train", "prior", "--vqvae", tiny_checkpoint, "--data", image_folder, "--eval-data",
                     image_folder, "--eval-limit", "24", "--name", "tinyprior", "--out", out, "--steps", "150",
                     "--batch-size", "32", "--hidden", "16", "--layers", "4", "--lr", "3e-3", "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    return out / "tinyprior.safetensors"


IMAGES = "flickr8k-1k/images"


@pytest.fixture(scope="session")
def tiny_photos(tmp_path_factory, shared_data) -> Path:
    """A tiny photo model (3 residual stages of 32 codes) trained for real by `vqtool train photos` on
    8 training photos (a few seconds); its integer context model is derived at export."""
    out = tmp_path_factory.mktemp("photos")
    result = run_cli("train", "photos", "--data", shared_data / IMAGES, "--out", out, "--name", "tiny-photos",
                     "--limit", "8", "--steps", "60", "--batch-size", "8", "--crop", "32", "--widths", "8,16,16",
                     "--stages", "3", "--codes", "32", "--embedding-dim", "8", "--context-hidden", "8",
                     "--eval-limit", "0", "--calibration", "2", "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    return out / "tiny-photos.safetensors"


def synthetic_voice(seconds: float, f0: float, seed: int = 0, rate: int = 16000) -> np.ndarray:
    """A buzzy "vowel" sequence at pitch f0: harmonics shaped by formants that change every 150 ms."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    out = np.zeros_like(t)
    segment = int(0.15 * rate)
    for start in range(0, len(t), segment):
        f1, f2 = rng.uniform(300, 900), rng.uniform(1000, 2500)
        part = t[start:start + segment]
        for k in range(1, int(4000 / f0)):
            f = k * f0
            gain = np.exp(-((f - f1) / 200) ** 2) + 0.6 * np.exp(-((f - f2) / 300) ** 2) + 0.02
            out[start:start + segment] += gain * np.sin(2 * np.pi * f * part)
    return (0.2 * out / np.abs(out).max()).astype(np.float32)


@pytest.fixture(scope="session")
def voice_folder(tmp_path_factory) -> Path:
    """Two synthetic speakers (low and high pitch), six 1.5 s clips each, as SPEAKER/*.wav."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("voices")
    for name, f0 in (("low", 110.0), ("high", 240.0)):
        (folder / name).mkdir()
        for i in range(6):
            sf.write(folder / name / f"{i}.wav", synthetic_voice(1.5, f0, seed=i), 16000)
    return folder


@pytest.fixture(scope="session")
def tiny_speech(tmp_path_factory, voice_folder) -> Path:
    """A tiny speech model (and its speaker encoder) trained for real by the CLI in a few seconds."""
    out = tmp_path_factory.mktemp("speech")
    result = run_cli("train", "audio-classifier", "--data", voice_folder, "--name", "spk", "--out", out / "spk",
                     "--steps", "30", "--batch-size", "8", "--width", "16", "--embedding", "8", "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    result = run_cli("train", "speech", "--data", voice_folder, "--speaker-encoder", out / "spk" / "spk.safetensors",
                     "--name", "talk", "--out", out / "talk", "--steps", "40", "--batch-size", "4", "--hidden", "32",
                     "--codes", "32", "--embedding-dim", "8", "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    return out / "talk" / "talk.safetensors"


@pytest.fixture(scope="session")
def tiny_vocoder(tmp_path_factory, voice_folder, tiny_speech) -> Path:
    """The tiny speech model with a vocoder head trained for real by the CLI in a few seconds."""
    out = tmp_path_factory.mktemp("vocoder")
    result = run_cli("train", "vocoder", "--speech", tiny_speech, "--data", voice_folder, "--name", "talk-voc",
                     "--out", out, "--steps", "30", "--batch-size", "4", "--width", "16", "--blocks", "1",
                     "--validation", "2", "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    return out / "talk-voc.safetensors"


def synthetic_face(smile: bool, size: int = 32, seed: int = 0, colour: bool = False) -> np.ndarray:
    """A cartoon face: an oval with two eyes and a mouth that curves up (smile) or stays straight."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    cx, cy = 0.5 + rng.uniform(-0.05, 0.05, 2)
    skin, background = rng.uniform(150, 230), rng.uniform(20, 90)
    image = np.where(((x - cx) / 0.33) ** 2 + ((y - cy) / 0.42) ** 2 < 1, skin, background)
    for ex in (cx - 0.13, cx + 0.13):
        image[(x - ex) ** 2 + (y - cy + 0.1) ** 2 < 0.004] = 30
    mouth_x = np.abs(x - cx) < 0.16
    curve = cy + 0.2 - (0.08 - 3 * (x - cx) ** 2 if smile else 0.0)
    image[mouth_x & (np.abs(y - curve) < 0.035)] = 40
    image = image + rng.normal(0, 4, image.shape)
    array = np.clip(image, 0, 255).astype(np.uint8)
    return np.stack([array, (array * 0.8).astype(np.uint8), (array * 0.7).astype(np.uint8)], -1) if colour else array


@pytest.fixture(scope="session")
def face_folder(tmp_path_factory) -> Path:
    """faces/{smile,neutral}/*.png (grayscale 32x32) with a test.txt beside it holding out every fifth face."""
    root = tmp_path_factory.mktemp("faces")
    held = []
    for label in ("smile", "neutral"):
        (root / "faces" / label).mkdir(parents=True)
        for i in range(60):
            name = f"{label}/{i:03d}.png"
            Image.fromarray(synthetic_face(label == "smile", seed=i + (label == "smile") * 1000)).save(root / "faces" / name)
            if i % 5 == 0:
                held.append(name)
    (root / "test.txt").write_text("\n".join(held) + "\n")
    return root / "faces"


@pytest.fixture(scope="session")
def tiny_fader(tmp_path_factory, face_folder) -> Path:
    """A tiny fader and its judge, both trained for real by the CLI in seconds."""
    out = tmp_path_factory.mktemp("fader")
    result = run_cli("train", "classifier", "--data", face_folder, "--attributes", "smile", "--name", "judge",
                     "--out", out / "judge", "--steps", "60", "--batch-size", "16", "--width", "8", "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    result = run_cli("train", "fader", "--data", face_folder, "--attributes", "smile", "--name", "tinyface",
                     "--out", out / "fader", "--steps", "300", "--batch-size", "16", "--image-size", "32",
                     "--widths", "8,16,32", "--lambda", "0.01", "--ramp-steps", "100", "--lr", "2e-3",
                     "--judge", out / "judge" / "judge.safetensors", "--probe-faces", "0", "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    return out / "fader" / "tinyface.safetensors"


def pytest_terminal_summary(terminalreporter):
    """What each fuzz family tried (tests/test_fuzz.py): inputs, clean rejections, valid results."""
    tally = getattr(sys.modules.get("test_fuzz"), "TALLY", None)
    if tally:
        terminalreporter.write_sep("-", "fuzz: inputs tried / rejected cleanly / accepted; nothing else escaped")
        for family, counts in sorted(tally.items()):
            terminalreporter.write_line(f"{family:26} {counts['tried']:7d} {counts['rejected']:7d} {counts['accepted']:7d}")


def synthetic_motion(lines: int, seed: int = 0) -> np.ndarray:
    """A clip in the CMU exponential-map layout (117 values a line): every joint angle a slow sinusoid
    of its own phase, the root drifting forward; a tiny motion model learns it in seconds."""
    rng = np.random.default_rng(seed)
    t = np.arange(lines)[:, None] / 50.0
    frames = 0.3 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0, 117) * t + rng.uniform(0, 6.3, 117))
    frames[:, :3] = np.array([0.0, 17.0, 0.0]) + np.array([0.0, 0.0, 1.0]) * t * 10
    return frames.astype(np.float32)


@pytest.fixture(scope="session")
def motion_folder(tmp_path_factory) -> Path:
    """train/walk/walk_{1,2,3}.txt and test/walk/walk_1.txt of synthetic clips (300 lines = 6 s each)."""
    root = tmp_path_factory.mktemp("mocap")
    for split, count in (("train", 3), ("test", 1)):
        (root / split / "walk").mkdir(parents=True)
        for i in range(count):
            clip = synthetic_motion(300, seed=i + (100 if split == "test" else 0))
            np.savetxt(root / split / "walk" / f"walk_{i + 1}.txt", clip, fmt="%.6f", delimiter=",")
    return root


@pytest.fixture(scope="session")
def tiny_motion(tmp_path_factory, motion_folder) -> Path:
    """A tiny CPP-VAE of motion trained for real by `vqtool train motion` (a few seconds)."""
    out = tmp_path_factory.mktemp("motion")
    result = run_cli("train", "motion", "--data", motion_folder, "--name", "wiggle", "--out", out, "--steps", "60",
                     "--batch-size", "16", "--hidden", "32", "--width", "8", "--latent", "4", "--anneal-steps", "20",
                     "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    return out / "wiggle.safetensors"
