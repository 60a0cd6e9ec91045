"""SNMP polling: a small asyncio client over pysnmp 7, counter rates, device OID tables.

Here: the protocols a v3 login names, which the config's snmp options use too (the
client's module, loaded only by an SNMP check, holds the rest).
"""

from typing import Literal

AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
PrivProtocol = Literal["DES", "3DES", "AES", "AES192", "AES256"]
