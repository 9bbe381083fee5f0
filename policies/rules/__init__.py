"""Rules grouped by domain; each module exports RULES."""
