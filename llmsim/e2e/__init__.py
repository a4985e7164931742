"""End-to-end fidelity: llmsim's predictions checked against serving runs measured at the client.

A :class:`~llmsim.e2e.runs.ServingRun` is one real deployment under one workload: the scenario
that describes it and what the benchmark client measured. :func:`~llmsim.e2e.runs.client_metrics`
computes the same metrics from a simulated run, the way the client computed them.
"""
