"""sliceops-monitor: samples every slice container and the server once a beat and
writes the figures to the gateway database's telemetry tables."""

__version__ = "0.1.0"
