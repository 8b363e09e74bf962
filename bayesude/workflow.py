"""Workflow files: which data, which models, which inference settings.

A workflow is a YAML file validated here before anything runs, so a mistake is
reported with the file, the field and the fix, not as a traceback from a fit
an hour later. Paths inside it are relative to the workflow file itself.
"""

from __future__ import annotations

import pathlib
from typing import Any, Literal

import pydantic
import yaml

from bayesude.core.specification import ModelSpecification, specification_from_dict


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class SubjectEntry(_Strict):
    """One subject's recording: its file, sweeps and optional window."""

    file: str
    sweeps: list[int] | None = None
    window_ms: tuple[float, float] | None = None


class DataSection(_Strict):
    """Where the recordings are and how to preprocess them."""

    loader: Literal["current_clamp", "dataset"] = "current_clamp"
    subjects: dict[str, SubjectEntry]
    window_ms: tuple[float, float] | None = None
    downsample_ms: float = pydantic.Field(default=1.0, gt=0)


class InferenceSection(_Strict):
    """Settings passed to :func:`bayesude.fit` for every subject and model."""

    method: Literal["nuts", "svi", "map"] = "nuts"
    num_chains: int = pydantic.Field(default=4, ge=1)
    num_warmup: int = pydantic.Field(default=500, ge=1)
    num_samples: int = pydantic.Field(default=500, ge=1)
    init: Literal["prior", "map", "svi"] = "svi"
    seed: int = 0
    target_accept_prob: float = pydantic.Field(default=0.8, gt=0, lt=1)
    max_tree_depth: int = pydantic.Field(default=10, ge=1)
    dense_mass: bool = False
    svi_steps: int = pydantic.Field(default=1000, ge=1)
    svi_learning_rate: float = pydantic.Field(default=0.02, gt=0)


class ExecutionSection(_Strict):
    """Where the fits run."""

    workers: int = pydantic.Field(default=2, ge=0)


class WorkflowFile(_Strict):
    """The whole workflow file, as validated data."""

    name: str = pydantic.Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    data: DataSection
    models: dict[str, dict[str, Any]]
    inference: InferenceSection = InferenceSection()
    execution: ExecutionSection = ExecutionSection()


class Workflow:
    """A validated workflow: settings, model specifications and resolved paths.

    Attributes
    ----------
    path
        The workflow file.
    settings
        The validated file contents.
    specifications
        One :class:`ModelSpecification` per model name.
    inference
        Inference settings per model name: the workflow's ``inference`` section
        with the model's own ``inference`` overrides applied.
    """

    def __init__(self, path: pathlib.Path, settings: WorkflowFile) -> None:
        self.path = path
        self.settings = settings
        self.specifications: dict[str, ModelSpecification] = {}
        self.inference: dict[str, dict[str, Any]] = {}
        self.discovery: dict[str, Any] = {}
        for name, description in settings.models.items():
            where = f"{path}: models.{name}"
            if not isinstance(description, dict):
                raise ValueError(f"{where} must be a mapping of model settings.")
            description = dict(description)
            overrides = description.pop("inference", None) or {}
            discovery = description.pop("discovery", None)
            self.specifications[name] = specification_from_dict(description, where)
            self.inference[name] = _inference_settings(
                settings.inference, overrides, where
            )
            if discovery is not None:
                from bayesude.symbolic.pipeline import parse_discovery

                self.discovery[name] = parse_discovery(
                    discovery, self.specifications[name], list(settings.models), where
                )

    @property
    def name(self) -> str:
        return self.settings.name

    def subject_files(self) -> dict[str, dict[str, Any]]:
        """Per-subject loader descriptions, paths resolved against the workflow file."""
        base = self.path.parent
        subjects = {}
        for subject, entry in self.settings.data.subjects.items():
            file = (base / entry.file).resolve()
            if not file.exists():
                raise FileNotFoundError(
                    f"{self.path}: data.subjects.{subject}.file names {entry.file}, "
                    f"which does not exist (looked for {file}). Paths are relative to "
                    f"the workflow file; fix the path or add the file."
                )
            description: dict[str, Any] = {"file": str(file)}
            if entry.sweeps is not None:
                description["sweeps"] = entry.sweeps
            if entry.window_ms is not None:
                description["window_ms"] = tuple(entry.window_ms)
            subjects[subject] = description
        return subjects


def load_workflow(path: str | pathlib.Path) -> Workflow:
    """Read and validate a workflow file.

    Raises
    ------
    FileNotFoundError
        The file, or a data file it names, does not exist.
    ValueError
        The YAML is malformed, or a field is missing, unknown or invalid; the
        message names the file and the field.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No workflow file at {path}; check the path.")
    try:
        contents = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(contents, dict):
        raise ValueError(
            f"{path} must hold a mapping with the sections name, data, models and "
            f"optionally inference and execution; it holds {type(contents).__name__}."
        )
    try:
        settings = WorkflowFile.model_validate(contents)
    except pydantic.ValidationError as error:
        raise ValueError(_describe_validation_error(path, error)) from None
    if not settings.models:
        raise ValueError(f"{path}: models is empty; name at least one model to fit.")
    return Workflow(path, settings)


def _inference_settings(
    defaults: InferenceSection, overrides: dict[str, Any], where: str
) -> dict[str, Any]:
    """The workflow's inference settings with one model's overrides applied."""
    try:
        merged = InferenceSection.model_validate({**defaults.model_dump(), **overrides})
    except pydantic.ValidationError as error:
        raise ValueError(
            _describe_validation_error(f"{where}.inference", error)
        ) from None
    return merged.model_dump()


def _describe_validation_error(
    path: pathlib.Path | str, error: pydantic.ValidationError
) -> str:
    lines = [f"{path} has {error.error_count()} problem(s):"]
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        if problem["type"] == "extra_forbidden":
            message = "unknown field; check its spelling against the documented fields"
        elif problem["type"] == "missing":
            message = "required field is missing; add it"
        else:
            message = problem["msg"]
        lines.append(f"  - {field}: {message}")
    return "\n".join(lines)
