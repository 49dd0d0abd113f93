"""The typed resource constructors: type tokens, property bags, secrecy of credentials."""

from __future__ import annotations

import pulumi
import pytest

from components.runpod import Endpoint, NetworkVolume, Registry, Secret, Template
from tests.fakes.pulumi_mocks import mocked, run
from tests.provider.support import IMAGE


def declare_all() -> None:
    Secret("s", name="proj_stack_r2", value="fake-value")
    Registry("r", name="proj_stack_ghcr", username="bot", password="fake-token")
    NetworkVolume("v", name="vol", size_gb=50, data_center_id="EU-RO-1")
    Template("t", name="tpl", image=IMAGE, ports=["8188/http"])
    Endpoint("e", name="ep", image=IMAGE, gpu_pools=["ADA_24"], workers_min=0, workers_max=2)
    Endpoint(
        "c", name="cpu-ep", image=IMAGE, cpu_flavors=[("cpu5c", 4)], workers_min=0, workers_max=1
    )


def test_type_tokens_are_dynamic_runpod_kinds() -> None:
    """Each kind registers as pulumi-python:dynamic/runpod:<Kind> with a pickled provider."""
    with mocked() as mocks:
        run(declare_all)
        types = {r.name: r.type for r in mocks.resources}
        assert types == {
            "s": "pulumi-python:dynamic/runpod:Secret",
            "r": "pulumi-python:dynamic/runpod:Registry",
            "v": "pulumi-python:dynamic/runpod:NetworkVolume",
            "t": "pulumi-python:dynamic/runpod:Template",
            "e": "pulumi-python:dynamic/runpod:Endpoint",
            "c": "pulumi-python:dynamic/runpod:Endpoint",
        }
        assert all("__provider" in r.inputs for r in mocks.resources)


def test_credentials_are_always_secret_inputs_even_when_passed_plain() -> None:
    """A plain string for a secret value or a registry password is still marked secret."""
    with mocked() as mocks:
        run(declare_all)
        by_name = {r.name: r for r in mocks.resources}
        assert "value" in by_name["s"].secret_paths
        assert "password" in by_name["r"].secret_paths
        assert "username" not in by_name["r"].secret_paths


def test_endpoint_compute_is_gpu_or_cpu() -> None:
    """gpu_pools builds `gpu`, cpu_flavors builds `cpu`; giving both (or neither) is refused."""
    with mocked() as mocks:
        run(declare_all)
        by_name = {r.name: r.inputs for r in mocks.resources}
        assert by_name["e"]["gpu"] == {"pools": ["ADA_24"], "count": 1}
        assert "cpu" not in by_name["e"]
        assert by_name["c"]["cpu"] == [{"id": "cpu5c", "vcpuCount": 4}]
        assert "gpu" not in by_name["c"]
    with pytest.raises(ValueError, match="gpu_pools or cpu_flavors"):
        Endpoint(
            "both",
            name="x",
            image=IMAGE,
            gpu_pools=["ADA_24"],
            cpu_flavors=[("cpu5c", 4)],
            workers_min=0,
            workers_max=1,
            opts=pulumi.ResourceOptions(),
        )
