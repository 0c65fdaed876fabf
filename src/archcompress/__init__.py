"""archcompress: find a much smaller student architecture for a trained CNN.

The curated public API; everything else is reachable through its subpackage.
"""

from archcompress.api import TeacherTrainingResult, compress, evaluate_candidate, train_teacher
from archcompress.checkpoint import Teacher, TeacherMeta, load_teacher
from archcompress.data import DataOptions, load_dataset
from archcompress.distill import TrainConfig
from archcompress.errors import ArchcompressError
from archcompress.evaluate import Budget
from archcompress.export import export_student
from archcompress.models import create_model
from archcompress.pipeline import CompressionResult
from archcompress.report import write_report
from archcompress.space import Candidate, CompressionSpace, load_student, save_student
from archcompress.version import __version__

__all__ = [
    "ArchcompressError",
    "Budget",
    "Candidate",
    "CompressionResult",
    "CompressionSpace",
    "DataOptions",
    "Teacher",
    "TeacherMeta",
    "TeacherTrainingResult",
    "TrainConfig",
    "__version__",
    "compress",
    "create_model",
    "evaluate_candidate",
    "export_student",
    "load_dataset",
    "load_student",
    "load_teacher",
    "save_student",
    "train_teacher",
    "write_report",
]
