"""State: the store and its schema, availability, the health model, the inventory."""
