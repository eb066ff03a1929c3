"""Recurring Globus transfers for Pegasus: the timer CLI and timers from workflow metadata."""
