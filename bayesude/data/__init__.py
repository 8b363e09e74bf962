"""Loaders for recordings, and the data convention they all produce.

Every loader returns an ``xarray.Dataset`` with dimensions
``(subject, sweep, time)``, a time coordinate with ``units``, observed and
input variables told apart by their ``role`` attribute, NaN where a subject has
no sample, and its provenance and preprocessing in attributes; see
``docs/conventions.md``.

- :func:`load_current_clamp`: current-clamp sweeps from NetCDF, Axon ABF
  (pyabf) or NWB (pynwb) files, with window, sweep selection and anti-aliased
  downsampling.
- :func:`load_csv`: tidy CSV tables ``subject, time, <variables>`` with a units
  row or a YAML/JSON sidecar.
- :func:`load_dataset`: NetCDF or Zarr stores already in the convention.
- :func:`load_files`: a folder or glob of files, one subject per file.
"""

from bayesude.data.convention import SubjectTable, assemble_subjects, select_subject
from bayesude.data.current_clamp import load_current_clamp
from bayesude.data.files import load_files
from bayesude.data.stores import load_dataset
from bayesude.data.tables import load_csv
from bayesude.errors import DataValidationError

__all__ = [
    "DataValidationError",
    "SubjectTable",
    "assemble_subjects",
    "load_csv",
    "load_current_clamp",
    "load_dataset",
    "load_files",
    "select_subject",
]
