"""Teacher zoo and model references (zoo name, torchvision:NAME, file.py:Factory, package.module:Factory)."""

from archcompress.models import resnet, small, vgg  # noqa: F401  (registers the zoo)
from archcompress.models.references import (
    check_model_io,
    create_model,
    reference_kind,
    torchvision_classifiers,
)
from archcompress.models.registry import ZooEntry, register_model, zoo_entries, zoo_entry

__all__ = [
    "ZooEntry",
    "check_model_io",
    "create_model",
    "reference_kind",
    "register_model",
    "torchvision_classifiers",
    "zoo_entries",
    "zoo_entry",
]
