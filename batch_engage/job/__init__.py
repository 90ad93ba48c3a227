"""The job: a TOML file read, checked and frozen into a Spec (paths, periods, send window); it knows no reader."""

from .checks import OUTCOME_BASE_COLUMNS, parse_duration, static_parameter_pairs
from .experiment import HOLDOUT, ExperimentSpec, VariantSpec
from .identity import history_identity, table_owner
from .openings import window_openings
from .outputs import check_outputs, checkpoint_family, prove_outputs, rehearsal_target
from .paths import check_tables
from .periods import current_period, is_period, previous_period
from .periods import is_future as is_future_period
from .periods import render as render_period
from .sections import Cap, FlowSpec, InputSpec, MappingSpec, OutputSpec, SendSpec
from .send_window import DAYS, SendWindow, parse_window, valid_zone
from .spec import Spec, load_spec

__all__ = [
    "DAYS",
    "HOLDOUT",
    "OUTCOME_BASE_COLUMNS",
    "Cap",
    "ExperimentSpec",
    "FlowSpec",
    "InputSpec",
    "MappingSpec",
    "OutputSpec",
    "SendSpec",
    "SendWindow",
    "Spec",
    "VariantSpec",
    "check_outputs",
    "check_tables",
    "checkpoint_family",
    "current_period",
    "history_identity",
    "is_future_period",
    "is_period",
    "load_spec",
    "parse_duration",
    "parse_window",
    "previous_period",
    "prove_outputs",
    "rehearsal_target",
    "render_period",
    "static_parameter_pairs",
    "table_owner",
    "valid_zone",
    "window_openings",
]
