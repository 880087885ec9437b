"""Demand paging: placeholders and stubs, eviction, faults and the turn's accounting."""
