"""Backups of everything a collector cannot lose, in one archive, and their restore.

``places`` names what must survive (by role, from the config), ``storecopy`` copies the
live state store consistently, ``archive`` writes and verifies the archive, ``restore``
puts each file where the current config says its role lives.
"""
