"""SNMP polling: a small asyncio client over pysnmp 7, counter rates, device OID tables."""
