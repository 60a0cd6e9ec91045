"""Rolling the agent out: enrollment tokens, broker accounts, check profiles, configs."""
