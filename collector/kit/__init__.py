"""The offline Windows kit: an MSI with a CPython runtime and the agent's dependencies,
and the wheels a PC with its own Python installs from.

``lock``: the Windows lock (pinned, hashed, no markers) and which wheels fit it.
``wheels``: fetching those wheels for every supported CPython, and installing them into
a Windows runtime's site-packages from a Linux build host.
"""
