"""Every slice's /data on the instance's quota volume: its tools, the boot script that mounts
it before the engine starts, the volume itself with one limited subvolume per slice."""

from __future__ import annotations


from pyinfra.operations import files

from sliceops.inventory import Inventory
from sliceops.operations import service, system, volume
from sliceops.paths import TEMPLATES
from sliceops.shell import quote


def check(inv: Inventory) -> None:
    """Before any change: the quotas hold what the slices store; the host has room."""
    if inv.quota_enabled:
        volume.quotas_fit(name="Check the disk quotas hold what the slices store", inv=inv, init=service.init_system())


def converge(inv: Inventory) -> None:
    if not inv.quota_enabled:
        return  # slice_defaults.disk: false: plain directories, made by the container step
    system.packages(name="Install btrfs-progs (the slice volume's tools)", names=["btrfs-progs"])
    init = service.init_system()
    name = inv.volume_service
    variables = dict(
        instance=inv.instance, service=name,
        image=quote(inv.volume_image), mountpoint=quote(inv.slices_data_dir),
    )
    files.template(
        name=f"Install the boot script /etc/init.d/{name} (mounts the slice volume)",
        src=str(TEMPLATES / "volume/sliceops-volume.init.j2"), dest=f"/etc/init.d/{name}", mode="755", **variables,
    )
    if init == "systemd":
        files.template(
            name=f"Install the systemd unit {name}.service (before docker.service)",
            src=str(TEMPLATES / "volume/sliceops-volume.service.j2"),
            dest=f"/etc/systemd/system/{name}.service", mode="644", **variables,
        )
    quotas = sorted({s.disk for s in inv.slices})
    volume.volume(
        name=f"Converge the slice volume {inv.slices_data_dir} (disk quotas {', '.join(quotas)})",
        inv=inv, init=init,
    )
    volume.mounted_at_boot(name=f"Mount the slice volume at boot ({name})", inv=inv, init=init)
