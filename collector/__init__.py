"""commune-collector: the province's single source of truth about its communes' IT.

It subscribes to the agents' topics, validates every message against the wire
contract in ``agent.wire``, keeps current state and up/down history, and serves
them. The agent never imports this package.
"""

__version__ = "0.1.0"
