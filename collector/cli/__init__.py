"""The command line (``commune-collector``)."""
