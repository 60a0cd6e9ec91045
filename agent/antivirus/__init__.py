"""Anti-malware knowledge: Security Center, Defender, process fallback, ClamAV."""
