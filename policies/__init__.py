"""swarmstack's CrossGuard policy pack (see PulumiPolicy.yaml and __main__.py)."""
