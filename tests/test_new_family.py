"""A model family added from outside the package, registered only here: training it, loading it,
its card, its command and `models list` all work without a line of shared code changed
(docs/adding-a-family.md is the guide)."""

import textwrap

import pytest
from typer.testing import CliRunner

from vqtool import registry

FILES = {
    "__init__.py": """
        from vqtool.registry import Family

        FAMILY = Family(name="scale", package="scale_family", architectures={"scale": "model:Scale"},
                        headline_metrics=("mse",))
    """,
    "model.py": """
        from dataclasses import dataclass

        import torch


        @dataclass
        class ScaleConfig:
            size: int = 4


        class Scale(torch.nn.Module):
            Config, architecture = ScaleConfig, "scale"

            def __init__(self, config):
                super().__init__()
                self.config, self.weight = config, torch.nn.Parameter(torch.zeros(config.size))
    """,
    "task.py": """
        import torch

        from vqtool.training import TaskBase

        from .model import Scale


        class ScaleTask(TaskBase):
            model_class = Scale

            def __init__(self, config):
                self.config, self.train, self.data_info = config, range(64), {"train_data": "doubling"}

            def batch(self, indices, device, generator):
                return torch.randn(len(indices), self.config.size, generator=generator).to(device)

            def loss(self, model, x, generator):
                loss = ((x * model.weight - 2 * x) ** 2).mean()  # learns to double
                return loss, {"mse": loss.item()}

            def evaluate(self, model, device):
                return {"mse": round(float(((model.weight - 2) ** 2).mean()), 6)}

            def card_notes(self):
                return {"task": "scale", "summary": "Doubles vectors."}
    """,
    "card.py": """
        from vqtool.cards import CardText

        CARDS = {"scale": CardText(intended_use="Testing the family registry.",
                                   metric_notes=["`mse`: distance of the weights from 2."],
                                   limitations=["Doubles; nothing else."])}
    """,
    "cli.py": """
        import typer

        from vqtool.cli.common import train_command


        def train_scale(size: int = typer.Option(4, "--size"), *, train):
            \"\"\"Train a vector that doubles.\"\"\"
            from vqtool.training import fit

            from .model import ScaleConfig
            from .task import ScaleTask

            fit(ScaleTask(ScaleConfig(size)), train.options())


        def register(app, train_app):
            train_command(train_app, "scale", name="scale", steps=200, lr=0.1, batch_size=8)(train_scale)
    """,
}


@pytest.fixture
def scale_family(tmp_path, monkeypatch):
    package = tmp_path / "scale_family"
    package.mkdir()
    for name, text in FILES.items():
        (package / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    import scale_family

    registry.register(scale_family.FAMILY)
    yield scale_family
    registry.unregister(scale_family.FAMILY)


def test_a_family_added_without_touching_shared_code(scale_family, tmp_path):
    from vqtool.cli import build_app
    from vqtool.hub import load

    runner = CliRunner()
    result = runner.invoke(build_app(), ["train", "scale", "--size", "3", "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    checkpoint = tmp_path / "run" / "scale.safetensors"
    model = load(str(checkpoint), "cpu", expect="scale")
    assert model.weight.detach().sub(2).abs().max() < 0.1  # it trained
    card = checkpoint.with_suffix(".md").read_text()
    assert "Testing the family registry." in card and "Doubles; nothing else." in card
    models = tmp_path / "models"
    models.mkdir()
    checkpoint.rename(models / "scale.safetensors")
    listed = runner.invoke(build_app(), ["models", "list", "--models-dir", str(models)])
    assert listed.exit_code == 0 and "scale" in listed.output and " mse " in listed.output


def test_an_unregistered_architecture_is_refused(tmp_path):
    from vqtool.errors import VqtoolError

    with pytest.raises(VqtoolError, match="unknown architecture 'scale'"):
        registry.architecture_class("scale")
