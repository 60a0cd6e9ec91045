"""The monthly report: the figures the province gathers by hand, from the recorded intervals."""
