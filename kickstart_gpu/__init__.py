"""A launcher that wraps a Pegasus job, samples its NVIDIA GPUs and adds GPU events to the
job's kickstart record."""

__version__ = "0.1.0"
