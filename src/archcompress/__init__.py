"""archcompress: find a much smaller student architecture for a trained CNN.

The curated public API; everything else is reachable through its subpackage.
"""

__version__ = "0.1.0"

from archcompress.api import TeacherTrainingResult, train_teacher
from archcompress.checkpoint import Teacher, TeacherMeta, load_teacher
from archcompress.data import DataOptions, load_dataset
from archcompress.distill import TrainConfig
from archcompress.errors import ArchcompressError
from archcompress.models import create_model

__all__ = [
    "ArchcompressError",
    "DataOptions",
    "Teacher",
    "TeacherMeta",
    "TeacherTrainingResult",
    "TrainConfig",
    "__version__",
    "create_model",
    "load_dataset",
    "load_teacher",
    "train_teacher",
]
