"""The agent types a stack runs: what they consume and produce, and how far they scale."""
