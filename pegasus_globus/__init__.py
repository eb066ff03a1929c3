"""Globus transfers and Globus Timers for the Pegasus Workflow Management System."""

__version__ = "0.1.0"
