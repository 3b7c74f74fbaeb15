"""Model-card words of the Fader Networks."""

from __future__ import annotations

from vqtool.cards import CardText

CARDS = {
    "fader": CardText(
        intended_use="Research, teaching and creative editing of face attributes with sliders (`vqtool fade`, "
                     "`vqtool.load(NAME).edit`). Not for deception, and not for decisions about people.",
        metric_notes=[
            "All on the held-out faces only (the list the training never saw). `psnr_db`: 10·log10(1/MSE) over "
            "all of them, pixels in [0, 1], 8-bit outputs, decoded at the faces' **true** attributes "
            "(`psnr_per_image_db`: per face, then averaged); `psnr_db_read_attributes`: decoded at what the "
            "model's own reader sees, as `vqtool fade` does for attributes no slider names.",
            "`reader_accuracy_NAME`: the built-in attribute reader (which fills in unnamed attributes) on the "
            "held-out faces.",
            "The judge is a separately trained attribute classifier (named below, trained on the train split "
            "only, never used to train the fader). `judge_accuracy_NAME_originals` / `_reconstructions`: the judge "
            "on the real faces and on their reconstructions. `swap_accuracy_NAME`: the attribute's alpha flipped "
            "(0 ↔ 1, the others at their true values), the share of faces the judge reads with the flipped "
            "value (target ≥ 0.9); `_adding` / `_removing`: the faces without / with the attribute.",
            "The independent judge (`independent_judge` in the provenance) is of another architecture and "
            "training than the fader's reader and judge (small CNNs trained on the same faces, which an edit can "
            "fool with a texture): a logistic regression on ImageNet EfficientNet-Lite0 features (nobody here "
            "trained them) fitted on training faces. `probe_accuracy_NAME_originals` / `_reconstructions` and "
            "`probe_swap_accuracy_NAME` (`_adding` / `_removing`) are its versions of the judge's numbers.",
            "`fd_*_NAME`: Fréchet distances on those EfficientNet-Lite0 features (not FID, which uses Inception "
            "features; comparable only with each other): for each target value of the attribute, the real "
            "held-out faces with it are halved, one half the reference; `fd_real` is the other half against it, "
            "`fd_reconstructions` that half's reconstructions, `fd_edited` as many faces edited to the value "
            "(from the faces without it); means over both values. `fd_edited_over_real_NAME`: their ratio "
            "(target ≤ 1.5).",
            "`*_pasted` (`swap_accuracy_NAME_pasted`, `probe_swap_accuracy_NAME_pasted`, `fd_pasted_NAME`): the "
            "same edits as `vqtool fade --paste` makes them, at the model's size: each real face plus the change "
            "its edit makes to its reconstruction (feathered at the border), so the face keeps its own detail and "
            "only the change is the model's.",
            "`slider_NAME_judge_probability`: the judge's mean probability of the attribute as its alpha takes "
            "the values `slider_NAME_alphas` (others true); `slider_NAME_monotone`: whether that mean curve never "
            "falls between alpha 0 and 1 (`..._extrapolated`: over the whole range); `slider_NAME_monotone_faces`: share of faces whose own curve never falls by more than 0.02 "
            "between alpha 0 and 1.",
        ],
        limitations=[
            "Trained on {data} only: faces should be roughly frontal and fill the crop as in that data "
            "(use `--crop` on larger photos). Any other image still gets an output, but not a meaningful edit.",
            "At 64x64 pixels the faces are blurry reconstructions: `--paste` adds only the change an edit makes "
            "to the original photo, so its detail stays, but the edited region is still soft.",
            "The fader's reader (which guides training) and its judge are small CNNs trained on the same faces, "
            "and the edits partly satisfy them with a texture rather than a face change (for the shipped models: "
            "a dotted stripe across the mouth for `smile`, checkerboards for `young`; README, docs/fader-change.png): "
            "the independent judge's `probe_swap_accuracy_*` and the FDs are the better guide to what a person sees.",
            "Binary attributes learned from labels that are themselves crude (a folder name, a self-reported "
            "gender, an age threshold): the sliders move what correlates with those labels in the data, which "
            "can include make-up, hair, lighting or skin tone, not a property of the person.",
            "Editing faces of real people can mislead or hurt: do not use edits to deceive, and do not use "
            "this model or its reader to infer anyone's gender, age or mood.",
        ],
    ),
}


def provenance_lines(prov: dict) -> list[str]:
    judge = prov.get("independent_judge")
    return [f"Independent judge, in the evaluation only: {judge}.", ""] if judge else []


def info_lines(config: dict) -> list[str]:
    """`vqtool models info`: the sliders, before the config line."""
    low, high = config.get("alpha_range", (0, 1))
    return ["  attributes " + ", ".join(f"{a} ({rule})" for a, rule in zip(config["attributes"], config.get("rules", [])))
            + f"; sliders from 0 (without) to 1 (with), allowed {low}..{high}"]
