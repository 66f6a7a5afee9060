"""The slices' runtime side: the image, the isolated network, one container per in-service
slice, and the destroy step (verified backup first) for slices marked `destroying`."""

from __future__ import annotations

import time

from pyinfra.operations import server

from sliceops.bundle import tarball
from sliceops.inventory import Inventory
from sliceops.operations import datadirs, docker, lifecycle, move, system, tenants, tls
from sliceops.operations.peers import this_host


def converge(inv: Inventory, fleet: Inventory | None = None) -> None:
    """`inv`: this host's slices; `fleet`: the whole inventory (a slice moving here comes from
    another host of it)."""
    images = f"{inv.share_dir}/images"
    system.ship_tree(tarball("images"), images, "the image recipes")
    if inv.slice_defaults.image == docker.REFERENCE_IMAGE:
        # Air-gapped hosts build the reference image's base from the distribution's packages.
        system.packages(name="Install debootstrap (offline base image)", names=["debootstrap"])
    docker.image_built(name=f"Build the slice image {inv.slice_defaults.image} if missing", inv=inv, images_dir=images)
    here = this_host(fleet or inv)
    docker.network(name=f"Create the slice network {inv.network} ({inv.docker.subnet}, no inter-slice traffic)", inv=inv,
                   database_here=here == (fleet or inv).database_host.name)
    # The monitor's group owns the data directories (it measures them); the user comes later.
    server.group(name=f"Create group {inv.monitor_user}", group=inv.monitor_user, system=True)
    datadirs.data_dirs_shared(name="Let the monitor's group read the slice data directories", inv=inv)
    tls.ca_copy(name=f"Copy PostgreSQL's CA certificate to {inv.pg_ca_file} (mounted read-only in each slice)", inv=inv)
    move.moved_here(name=f"Move slices to {here} (from their old host, through the controller)", inv=fleet or inv, here=here)
    n = sum(1 for s in inv.slices if s.in_service)
    docker.containers(name=f"Converge slice containers ({n} in service)", inv=inv)
    lifecycle.destroyed(
        name="Destroy slices marked destroying (verified final backups first)",
        inv=inv,
        stamp=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        whole=fleet or inv,
    )


def started(inv: Inventory) -> None:
    """The deploy's last step on a slice host: the new slices' containers, started in the
    background by the containers step while the steps since ran, are running."""
    docker.started(name="Wait for the new slices' containers (started in the background)", inv=inv)


def credentials(inv: Inventory) -> None:
    """A slice host that is not the database host makes its slices' passwords and credentials
    files itself, before the database host's roles step reads their verifiers."""
    if inv.multi_host and this_host(inv) != inv.database_host.name:
        # The credentials program and the verifiers run in python3 here (Debian's, standard library).
        system.packages(name="Install python3 (the tenants' credentials are made here)", names=["python3"])
    n = len(inv.kept_slices())
    tenants.credentials(name=f"Make the credentials of {n} slices where they run (the database host gets verifiers)", inv=inv)
