"""The Windows kit: one offline MSI per province, built on Linux (``windows-kit``).

``embed`` checks and unpacks python.org's embeddable CPython; ``lock`` and ``wheels``
bring the agent's dependencies as win_amd64 wheels from a pinned, hashed Windows lock;
``stage`` lays out the tree the MSI installs; ``wxs`` writes its WiX source, ``msi``
builds it with wixl and checks its tables; ``build`` ties them together.
"""
