"""What a compression method is: a search factory, the choice of its final student, the artefacts it saves
and what it adds to the report. The pipeline calls these hooks and nothing method-specific."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from archcompress.errors import ArchcompressError
from archcompress.evaluate import EvalContext, Result, ResultStore
from archcompress.evaluate.worker import WorkerState
from archcompress.rundir import RunDir
from archcompress.runtime import seed_everything
from archcompress.search import Search, TeacherStats, choose_student
from archcompress.search.choice import ranked_meeting, reward_name
from archcompress.space import Candidate, Student

if TYPE_CHECKING:
    from archcompress.config import CompressConfig


@dataclass
class ChosenStudent:
    """The student that gets the final distillation, and why it was chosen."""

    module: Student
    params: int
    macs: int
    metadata: dict[str, Any]  # stored in arch.json and the report (candidate, or pruning details)
    why: str  # one sentence for report.json's ``chosen`` and log.txt
    search_val_accuracy: float | None = None
    candidate_hash: str | None = None
    finalists: list[dict[str, Any]] = field(default_factory=list)  # the longer runs the choice compared


@dataclass
class MethodContext:
    """Everything a method may use, prepared by the pipeline before the run directory exists."""

    config: CompressConfig
    state: WorkerState  # teacher, data splits, compression space, device
    eval_context: EvalContext
    teacher: TeacherStats  # the teacher's val accuracy, size and (if measured) latency
    shared_store: ResultStore | None = None  # --store: results shared between runs and methods
    resume: bool = False
    # trains candidates for --finalist-epochs (through the run's store and executor); set while the search runs
    evaluate_longer: Callable[[list[Candidate]], list[Result]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Method:
    """A compression method; subclasses register with ``@register_method("name", OptionsDataclass)``.

    One instance serves one run: ``prepare`` (may refuse bad input, before the run directory exists), ``start``
    (the run directory is open), the search (if any) runs, then ``choose_final``, ``save_artifacts`` and
    ``report_extra``.
    """

    name: ClassVar[str] = ""
    options_type: ClassVar[type | None] = None
    searches: ClassVar[bool] = True  # False: no search, so no target check against the space (e.g. pruning)
    order: ClassVar[int] = 100  # position in listings (the paper's methods first)
    summary: ClassVar[str] = ""  # one line for ``--method``'s help and the docs
    # CLI options (by flag name) that only this method reads: passing them with another method earns a note
    own_flags: ClassVar[tuple[str, ...]] = ()

    def __init__(self, context: MethodContext) -> None:
        self.context = context
        self.search: Search | None = None

    @property
    def options(self) -> Any:
        """This method's options (an instance of ``options_type``), from the run's config."""
        return self.context.config.options_for(self.name)

    @classmethod
    def preset_options(cls, preset: str) -> Any:
        """This method's options under ``preset`` (``fast`` or ``paper``): the defaults unless overridden."""
        return cls.options_type() if cls.options_type is not None else None

    @classmethod
    def validate_config(cls, config: CompressConfig) -> None:
        """Refuse settings this method cannot work with, in one line that names the option."""

    @classmethod
    def config_notes(cls, config: CompressConfig) -> list[str]:
        """Notes on settings that do not apply or conflict for this method (shown, never fatal)."""
        return []

    @classmethod
    def objective_for(cls, config: CompressConfig) -> str:
        """What the reward's compression term measures when ranking candidates: params, macs or latency."""
        return "params"

    def objective(self) -> str:
        """This run's objective (see :meth:`objective_for`)."""
        return self.objective_for(self.context.config)

    def prepare(self) -> None:
        """Checks and set-up that can fail on bad input; by default builds the search."""
        self.search = self.make_search()

    def make_search(self) -> Search | None:
        """The search that proposes candidates (None: the method needs no search)."""
        raise NotImplementedError

    def start(self, run: RunDir) -> None:
        """Called once the run directory is open, before the search (e.g. to record what a resume needs)."""

    def choose_final(self, results: Sequence[Result]) -> ChosenStudent:
        """The student to distil: the best reward among the candidates that meet every constraint."""
        config, teacher = self.context.config, self.context.teacher
        if config.finalists > 1 and self.context.evaluate_longer is not None:
            finalists = ranked_meeting(results, teacher, config.constraints, self.objective())[: config.finalists]
            if len(finalists) > 1:
                return self._best_finalist(finalists)
        choice = choose_student(results, teacher, config.constraints, self.objective())
        if choice is None:
            raise ArchcompressError(
                f"none of the {len(results)} candidates trained successfully (see the run's log.txt): "
                "check the budget settings (e.g. a lower --lr) or raise --budget"
            )
        return build_chosen(self.context, choice.result, choice.why)

    def _best_finalist(self, finalists: list[Result]) -> ChosenStudent:
        """Train the finalists longer and take the best val accuracy (ties: the better search reward)."""
        assert self.context.evaluate_longer is not None
        config = self.context.config
        longer = self.context.evaluate_longer([r.candidate for r in finalists])
        rows = [{"candidate_hash": f.candidate_hash, "search_val_accuracy": f.val_accuracy,
                 "finalist_val_accuracy": r.val_accuracy if r.ok else None, "status": r.status}
                for f, r in zip(finalists, longer, strict=True)]  # fmt: skip
        best = max(range(len(finalists)), key=lambda i: (rows[i]["finalist_val_accuracy"] or -1.0, -i))
        accuracy = rows[best]["finalist_val_accuracy"] or 0.0
        why = (f"the best val accuracy ({accuracy:.2%}) after {config.finalist_epochs} epochs among "
               f"{len(finalists)} finalists: the candidates with the highest {reward_name(self.objective())} "
               f"that meet every constraint ({config.constraints.describe()})")  # fmt: skip
        chosen = build_chosen(self.context, finalists[best], why)
        chosen.finalists = rows
        return chosen

    def save_artifacts(self, run: RunDir) -> None:
        """Save what the method learnt (policies, codec) into the run directory."""

    def report_extra(self, run: RunDir) -> dict[str, Any]:
        """Sections this method adds to ``report.json`` (by key)."""
        return {}


def build_chosen(context: MethodContext, result: Result, why: str) -> ChosenStudent:
    """Build an evaluated candidate as the student to distil (with the teacher's weights where the budget says)."""
    config = context.config
    seed_everything(config.seed)
    built = context.state.space.build(result.candidate, inherit=config.candidate.init == "inherit")
    metadata = {"candidate": result.candidate.to_dict(), "inherited_layers": built.inherited,
                "fresh_layers": built.fresh}  # fmt: skip
    return ChosenStudent(built.module, built.params, built.macs, metadata, why, result.val_accuracy,
                         result.candidate_hash)  # fmt: skip
