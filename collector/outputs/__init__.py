"""Outputs: the time-series sink (line protocol, its process) and the monthly report."""
