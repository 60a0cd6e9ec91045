"""commune-agent: reports a commune PC's health, anti-malware, dedicated line and devices."""

__version__ = "0.1.0"
