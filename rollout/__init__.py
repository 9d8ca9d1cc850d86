"""Staged rollouts across endpoints (issue 17): variant choice, breakers, TTFT histograms, rollout state
and its step decision. Pure logic, like arena/: the I/O (outcome counts, the registry) lives in stores/
and sync/."""
