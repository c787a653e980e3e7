"""The one device table: device kinds as JAX reports them map to one entry each."""

import pytest

from pallas_kernels import devices
from pallas_kernels.int8_matmul import default_order


@pytest.mark.parametrize("device_kind, name, architecture, fp8", [
    ("NVIDIA H100 80GB HBM3", "h100", "hopper", True), ("NVIDIA H100 PCIe", "h100-pcie", "hopper", True),
    ("NVIDIA H800", "h800", "hopper", True), ("NVIDIA H200", "h200", "hopper", True),
    ("NVIDIA GH200 480GB", "gh200", "hopper", True), ("NVIDIA H20", "h20", "hopper", True),
    ("NVIDIA A100-SXM4-80GB", "a100", "ampere", False), ("NVIDIA A100 80GB PCIe", "a100", "ampere", False),
    ("NVIDIA L4", "l4", "ada", True), ("cpu", "cpu", "cpu", False)])
def test_device_kinds_map_to_their_entry(device_kind, name, architecture, fp8):
    device = devices.lookup(device_kind)
    assert (device.name, device.architecture, device.has_fp8) == (name, architecture, fp8)
    assert devices.is_hopper(device_kind) == (architecture == "hopper")
    # the INT8 GEMM's order follows the table: Mosaic (wgmma) first exactly on Hopper
    assert (default_order(device_kind)[0] == "mosaic") == (architecture == "hopper")


def test_every_example_kind_finds_its_own_entry_and_names_are_unique():
    names = [d.name for d in devices.DEVICES]
    assert len(names) == len(set(names))
    for device in devices.DEVICES:
        assert devices.lookup(device.example_kind) is device
        if device.architecture != "cpu":
            assert device.sm and device.num_cores and device.peak_ops["int8"] > device.peak_ops["fp16"]
            assert ("fp8_e4m3" in device.peak_ops) == device.has_fp8


def test_unknown_devices_and_names():
    assert devices.lookup("NVIDIA L40S") is None and devices.architecture("TPU v5e") is None
    with pytest.raises(KeyError, match="'b200' is not one of"):
        devices.by_name("b200")


def test_a_registered_device_goes_before_the_wider_patterns():
    added = devices.Device(name="h100-nvl-test", pattern=r"\bH100 NVL\b", example_kind="NVIDIA H100 NVL",
                           architecture=devices.HOPPER, sm=90, has_fp8=True)
    try:
        devices.register_device(added)
        assert devices.lookup("NVIDIA H100 NVL") is added
        assert devices.lookup("NVIDIA H100 80GB HBM3").name == "h100"
    finally:
        devices.DEVICES.remove(added)
