"""inbox-guard: holds the professional frame when clients email out of hours."""

__version__ = "0.1.0"
