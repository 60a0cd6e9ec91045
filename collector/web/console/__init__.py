"""The technicians' web console: server-rendered pages, Vietnamese by default."""
