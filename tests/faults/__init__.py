"""The fault campaign: the real daemon under kills, vendor faults, store outages and bad input."""
