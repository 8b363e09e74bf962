"""Workflow files: which data, which models, which inference settings.

A workflow is a YAML file validated here before anything runs, so a mistake is
reported with the file, the field and the fix, not as a traceback from a fit
an hour later. Paths inside it are relative to the workflow file itself.
"""

from __future__ import annotations

import pathlib
from typing import Any, Literal

import pydantic
import xarray as xr
import yaml

from bayesude.core.specification import ModelSpecification, specification_from_dict


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class SubjectEntry(_Strict):
    """One subject's file and where in it to look.

    ``sweeps``, ``window_ms`` and ``channel`` are for current-clamp files;
    ``recording``, ``window_s`` and ``bin_s`` are for the spike-count loaders
    (see :mod:`bayesude.population` and :mod:`bayesude.decoding`).
    """

    file: str
    sweeps: list[int] | None = None
    window_ms: tuple[float, float] | None = None
    channel: int | str | None = None
    recording: int | None = None
    window_s: tuple[float, float] | None = None
    bin_s: float | None = pydantic.Field(default=None, gt=0)


#: Loaders of current-clamp recordings (NetCDF by suffix, ABF, NWB).
CURRENT_CLAMP_LOADERS = ("current_clamp", "abf", "nwb")
#: Loaders of tables and stores in the data convention.
TABLE_LOADERS = ("csv", "netcdf", "zarr")
#: Loaders that bin spike times into counts, one file per subject.
SPIKE_COUNT_LOADERS = ("population_counts", "spike_counts_with_stimulus")


class DataSection(_Strict):
    """Where the recordings are, which loader reads them, and their preprocessing.

    Name the subjects' files one by one (``subjects``) or give one file,
    folder or glob pattern (``files``). Current-clamp loaders take
    ``window_ms`` and ``downsample_ms``; table loaders take ``sidecar``,
    ``t0``, ``convert_units``, ``window`` and ``downsample`` (in the output
    time units).
    """

    loader: Literal[
        "current_clamp",
        "abf",
        "nwb",
        "csv",
        "netcdf",
        "zarr",
        "population_counts",
        "spike_counts_with_stimulus",
    ] = "current_clamp"
    subjects: dict[str, SubjectEntry] | None = None
    files: str | None = None
    window_ms: tuple[float, float] | None = None
    downsample_ms: float | None = pydantic.Field(default=None, gt=0)
    sidecar: str | None = None
    t0: float | None = None
    convert_units: dict[str, str] | None = None
    window: tuple[float, float] | None = None
    downsample: float | None = pydantic.Field(default=None, gt=0)

    @pydantic.model_validator(mode="after")
    def _fields_fit_the_loader(self) -> DataSection:
        if (self.subjects is None) == (self.files is None):
            raise ValueError(
                "give exactly one of 'subjects' (a file per subject) and 'files' "
                "(a file, folder or glob pattern)"
            )
        if self.loader in SPIKE_COUNT_LOADERS and self.subjects is None:
            raise ValueError(
                f"loader {self.loader!r} reads one file per subject: list them "
                "under 'subjects' instead of 'files'"
            )
        wrong = [
            f"subjects.*.{name}"
            for entry in (self.subjects or {}).values()
            for name in _SUBJECT_FIELDS
            if getattr(entry, name) is not None
            and name not in _SUBJECT_FIELDS_OF[self._loader_kind]
        ]
        wrong += [
            name
            for name in _DATA_FIELDS
            if getattr(self, name) is not None
            and name not in _DATA_FIELDS_OF[self._loader_kind]
        ]
        if wrong:
            raise ValueError(
                f"loader {self.loader!r} does not take {sorted(set(wrong))}; "
                f"current-clamp loaders {list(CURRENT_CLAMP_LOADERS)} take "
                f"window_ms, downsample_ms and per-subject sweeps, window_ms and "
                f"channel; loaders {list(TABLE_LOADERS)} take "
                f"{list(_DATA_FIELDS_OF['table'])}; loaders "
                f"{list(SPIKE_COUNT_LOADERS)} take per-subject recording, window_s "
                f"and bin_s"
            )
        return self

    @property
    def _loader_kind(self) -> str:
        if self.loader in CURRENT_CLAMP_LOADERS:
            return "current_clamp"
        if self.loader in TABLE_LOADERS:
            return "table"
        return "spike_counts"


_SUBJECT_FIELDS = ("sweeps", "window_ms", "channel", "recording", "window_s", "bin_s")
_SUBJECT_FIELDS_OF = {
    "current_clamp": ("sweeps", "window_ms", "channel"),
    "table": (),
    "spike_counts": ("recording", "window_s", "bin_s"),
}
_DATA_FIELDS = (
    "window_ms",
    "downsample_ms",
    "sidecar",
    "t0",
    "convert_units",
    "window",
    "downsample",
)
_DATA_FIELDS_OF = {
    "current_clamp": ("window_ms", "downsample_ms"),
    "table": ("sidecar", "t0", "convert_units", "window", "downsample"),
    "spike_counts": (),
}


class InferenceSection(_Strict):
    """Settings passed to :func:`bayesude.fit` for every subject and model."""

    method: Literal["nuts", "svi", "map"] = "nuts"
    num_chains: int = pydantic.Field(default=4, ge=1)
    num_warmup: int = pydantic.Field(default=500, ge=1)
    num_samples: int = pydantic.Field(default=500, ge=1)
    init: Literal["prior", "map", "svi", "laplace"] = "svi"
    seed: int = 0
    target_accept_prob: float = pydantic.Field(default=0.8, gt=0, lt=1)
    max_tree_depth: int = pydantic.Field(default=10, ge=1)
    dense_mass: bool = False
    svi_steps: int = pydantic.Field(default=1000, ge=1)
    svi_learning_rate: float = pydantic.Field(default=0.02, gt=0)


class ExecutionSection(_Strict):
    """Where the fits run.

    ``scheduler`` is the address of an existing Dask cluster
    (``tcp://HOST:PORT``); without it a local cluster of ``workers`` processes
    is started (0 fits in this process).
    """

    workers: int = pydantic.Field(default=2, ge=0)
    scheduler: str | None = pydantic.Field(
        default=None, pattern=r"^(tcp|tls|inproc|ucx|ws|wss)://\S+$"
    )


class HierarchicalSection(_Strict):
    """How the hierarchical fit pools subjects (:mod:`bayesude.inference.hierarchical`).

    ``pooled`` names the mechanistic parameters drawn from a population
    distribution (default: every free mechanistic parameter);
    ``spread_prior_scale`` the HalfNormal scale of each population spread
    (default: half the parameter's prior scale).
    """

    pooled: list[str] | None = None
    centered: bool = False
    spread_prior_scale: dict[str, float] = {}
    shared_noise: bool = False


class WorkflowFile(_Strict):
    """The whole workflow file, as validated data."""

    name: str = pydantic.Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    data: DataSection
    models: dict[str, dict[str, Any]]
    inference: InferenceSection = InferenceSection()
    execution: ExecutionSection = ExecutionSection()
    fits: Literal["independent", "hierarchical", "both"] = "independent"
    hierarchical: HierarchicalSection = HierarchicalSection()


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
        """Per-subject file descriptions, paths resolved against the workflow file."""
        base = self.path.parent
        subjects = {}
        for subject, entry in (self.settings.data.subjects or {}).items():
            file = (base / entry.file).resolve()
            if not file.exists():
                raise FileNotFoundError(
                    f"{self.path}: data.subjects.{subject}.file names {entry.file}, "
                    f"which does not exist (looked for {file}). Paths are relative to "
                    f"the workflow file; fix the path or add the file."
                )
            description = entry.model_dump(exclude_none=True)
            description["file"] = str(file)
            if entry.window_ms is not None:
                description["window_ms"] = tuple(entry.window_ms)
            for name in ("recording", "window_s", "bin_s"):
                if getattr(entry, name) is not None:
                    description[name] = getattr(entry, name)
            subjects[subject] = description
        return subjects

    def load_data(self) -> xr.Dataset:
        """Load the workflow's recordings with its loader and preprocessing.

        A subject whose file cannot be used is left out and its reason kept in
        the attribute ``subject_errors`` (JSON, by subject), so a batch can
        report it and fit the others.

        Raises
        ------
        FileNotFoundError
            A file the workflow names does not exist, or ``files`` matches
            nothing; the message names the workflow file and the field.
        """
        from bayesude.data import load_current_clamp
        from bayesude.data.files import combine, load_files, matching_files

        data = self.settings.data
        options = self._loader_options()
        if data.files is not None:
            pattern = str(self.path.parent / data.files)
            try:
                matching_files(pattern)
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"{self.path}: data.files is {data.files!r}, which matches no "
                    f"file (looked for {pattern}). Paths are relative to the "
                    f"workflow file; fix the path or pattern."
                ) from None
            return load_files(pattern, loader=data.loader, **options)
        subjects = self.subject_files()
        if data.loader in CURRENT_CLAMP_LOADERS:
            return load_current_clamp(subjects, **options)
        return combine(
            [
                _single_subject(
                    load_files(entry["file"], loader=data.loader, **options), name
                )
                for name, entry in subjects.items()
            ]
        )

    def _loader_options(self) -> dict[str, Any]:
        data = self.settings.data
        options: dict[str, Any] = {"errors": "collect"}
        if data.loader in CURRENT_CLAMP_LOADERS:
            options["window_ms"] = data.window_ms
            options["downsample_ms"] = data.downsample_ms or 1.0
            if data.loader != "current_clamp":
                options["format"] = data.loader
            return options
        if data.sidecar is not None:
            options["sidecar"] = str(self.path.parent / data.sidecar)
        options.update(
            t0=data.t0,
            convert_units=data.convert_units,
            window=data.window,
            downsample=data.downsample,
        )
        return options


def _single_subject(dataset: xr.Dataset, name: str) -> xr.Dataset:
    """A one-subject dataset renamed to `name`, the workflow's subject name."""
    if dataset.sizes["subject"] != 1:
        raise ValueError(
            f"data.subjects.{name} names a file with {dataset.sizes['subject']} "
            f"subjects ({', '.join(map(str, dataset['subject'].values))}); list it "
            "under 'files' instead, which keeps every subject."
        )
    return dataset.assign_coords(subject=[name])


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
