"""Polycom endpoints: readiness for a meeting from SNMP or the VideoOS REST API."""
