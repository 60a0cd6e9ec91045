"""What every stage shares: Vietnam's time and the words shown to people (vi, en)."""
