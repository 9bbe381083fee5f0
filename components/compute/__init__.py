"""Compute layer: the cluster and its network, node groups, GPU pools with MIG, GPU catalogue."""
