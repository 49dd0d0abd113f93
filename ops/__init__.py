"""Operator CLI for the ComfyUI serverless endpoint: ``python -m ops smoke|canary|health|cost``.

Every gate of the rollout plan as a command: ``smoke`` (the testing checklist), ``canary``
(success rate and latency under load), ``health`` (queue and worker alerts) and ``cost``
(cost per generation against Scenario). Plus what CI runs around them: ``models seed`` (fill
the models volume before traffic), ``promote record|verify|open-pr`` and ``pin-digest``
(promotion by gate record), ``health-alert`` (the alert issue), ``stack-secrets`` (stack
secrets from a CI environment), ``deploy-plan`` and ``backend``. Importing this package
does no I/O; the commands live in :mod:`ops.cli`.
"""
