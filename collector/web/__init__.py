"""The web: the IOC's API, the technicians' console, metrics, and who may ask what."""
