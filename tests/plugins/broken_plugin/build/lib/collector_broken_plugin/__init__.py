"""Entry points that are wrong on purpose: one fails to import, one is not a Factory."""

not_a_factory = {"type": "not_a_factory"}
