"""Alerts: rules, their evaluation and lifecycle, silences, notifications."""
