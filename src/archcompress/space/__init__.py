"""Teacher-relative compression space: trace a teacher into units, then resolve, cost and build candidates."""

from archcompress.space.build import BuildResult, Residual, Student
from archcompress.space.candidate import Candidate
from archcompress.space.cost import Cost, count_params, measure_macs
from archcompress.space.inspect import render_summary, summary
from archcompress.space.ir import StudentArch
from archcompress.space.options import SpaceOptions
from archcompress.space.resolve import InvalidCandidateError, Plan
from archcompress.space.rules import DEFAULT_RULES, RemovalRules
from archcompress.space.space import DEFAULT_MIN_CHANNELS, DEFAULT_RATIOS, CompressionSpace
from archcompress.space.student import load_student, save_student
from archcompress.space.units import FEATURE_SCHEMA, ChannelGroup, FeatureSchema, Unit

__all__ = [
    "DEFAULT_MIN_CHANNELS",
    "DEFAULT_RATIOS",
    "DEFAULT_RULES",
    "FEATURE_SCHEMA",
    "BuildResult",
    "Candidate",
    "ChannelGroup",
    "CompressionSpace",
    "Cost",
    "FeatureSchema",
    "InvalidCandidateError",
    "Plan",
    "RemovalRules",
    "Residual",
    "SpaceOptions",
    "Student",
    "StudentArch",
    "Unit",
    "count_params",
    "load_student",
    "measure_macs",
    "render_summary",
    "save_student",
    "summary",
]
