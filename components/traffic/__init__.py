"""Traffic layer: namespaces and the NetworkPolicies that decide who may reach whom."""
