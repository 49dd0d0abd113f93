"""Operator CLI for the ComfyUI serverless endpoint: ``python -m ops smoke|canary|health|cost``.

Every gate of the rollout plan as a command: ``smoke`` (the testing checklist), ``canary``
(success rate and latency under load), ``health`` (queue and worker alerts) and ``cost``
(cost per generation against Scenario). Plus ``pin-digest``, which the promote workflow
uses to pin staging's image digest in ``Pulumi.prod.yaml``. Importing this package does no
I/O; the commands live in :mod:`ops.cli`.
"""
