"""``collector pgo``: a profile for Go's profile-guided optimisation from the collector's
CPU profiles (merge.py)."""

from collector.pgo.merge import PgoError, PgoReport, build_pgo

__all__ = ["PgoError", "PgoReport", "build_pgo"]
