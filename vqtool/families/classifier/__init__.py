"""Classifiers trained by the project: judges of generated samples, edits and voices, and the speech
model's speaker encoder. Their networks are shared building blocks (vqtool/classifiers.py), since other
families build them in or load them as judges."""

from vqtool.evaluation import AUDIO_CLASSIFIER, IMAGE_CLASSIFIER
from vqtool.registry import Family

FAMILY = Family(
    name="classifier",
    package=__name__,
    architectures={IMAGE_CLASSIFIER: "vqtool.classifiers:Classifier",
                   AUDIO_CLASSIFIER: "vqtool.classifiers:AudioClassifier"},
    headline_metrics=("accuracy",),
)
