"""Tools for users' own test suites (and ours).

- :mod:`referralgraph.testing.reference`: a small pure-Python implementation
  of DESIGN.md's semantics, to use as an oracle.
- :mod:`referralgraph.testing.strategies`: hypothesis strategies for
  referral tables (valid and invalid), events and policies.
"""
