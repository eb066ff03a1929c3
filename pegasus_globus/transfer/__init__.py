"""Globus transfers for Pegasus: the Python API behind ``pegasus-globus-online``."""

from .operations import GlobusTransfers, default_label
from .options import OptionError, TransferOptions
from .urls import GoUrl, parse_go_url
from .watch import TaskOutcome, TransferFailed

__all__ = ["GlobusTransfers", "GoUrl", "OptionError", "TaskOutcome", "TransferFailed",
           "TransferOptions", "default_label", "parse_go_url"]
