"""The instance's slice volume as the host has it: the image, its mount, each slice's
subvolume with its quota and usage, plain directories still waiting to move in, the room
left on the host's filesystem, and whether the volume is mounted at boot. One call."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyinfra.api import FactBase

from sliceops.errors import RemoteStateError
from sliceops.shell import quote, words


@dataclass
class VolumeState:
    image_size: int | None = None  # bytes; None: no image yet
    avail: int = 0  # bytes free on the filesystem that holds (or will hold) the image
    mounted: str | None = None  # the mount's source (a loop device) when mounted on the mountpoint
    fstype: str | None = None
    # slice id -> {"id": subvolume id, "used": bytes, "limit": bytes or None}
    subvolumes: dict = field(default_factory=dict)
    plain: dict = field(default_factory=dict)  # name -> bytes: entries of the unmounted mountpoint
    # name -> bytes: plain directories inside the mounted volume (not subvolumes: no quota),
    # e.g. a data directory a restore swapped in
    inner: dict = field(default_factory=dict)
    staged: dict = field(default_factory=dict)  # name -> bytes: entries of the staging directory
    at_boot: bool = False


# sh, with $1..$5 = image, mountpoint, staging directory, boot service name, init system.
_SCRIPT = r"""
img=$1; mnt=$2; old=$3; svc=$4; init=$5
[ -f "$img" ] && echo "image $(stat -c %s "$img")"
p=${img%/*}; while [ ! -d "$p" ]; do p=${p%/*}; [ -n "$p" ] || p=/; done
echo "avail $(df -P -B1 "$p" | awk 'NR == 2 {print $4}')"
if m=$(findmnt -n -o SOURCE,FSTYPE --mountpoint "$mnt"); then
  echo "mount $m"
  btrfs subvolume list -o "$mnt" 2>/dev/null | awk '{print "subvol", $2, $NF}'
  btrfs qgroup show -re --raw --sync "$mnt" 2>/dev/null | awk 'NR > 2 {print "qgroup", $1, $2, $4}'
  # 256: the inode number of every subvolume's root; any other directory is a plain one.
  for d in "$mnt"/*; do
    [ -d "$d" ] && [ "$(stat -c %i "$d")" != 256 ] && echo "inner $(du -s -B1 "$d" | cut -f1) ${d##*/}"
  done
elif [ -d "$mnt" ]; then
  for d in "$mnt"/* "$mnt"/.[!.]*; do [ -e "$d" ] && echo "plain $(du -s -B1 "$d" | cut -f1) ${d##*/}"; done
fi
if [ -d "$old" ]; then
  for d in "$old"/* "$old"/.[!.]*; do [ -e "$d" ] && echo "staged $(du -s -B1 "$d" | cut -f1) ${d##*/}"; done
fi
if [ "$init" = systemd ]; then
  systemctl is-enabled --quiet "$svc.service" 2>/dev/null && echo boot
else
  ls /etc/rcS.d/S??"$svc" >/dev/null 2>&1 && echo boot
fi
true
"""


# The subject of the fact cache (sliceops/factcache.py) the volume step touches: growing the
# volume for a new slice makes no PostgreSQL step read the cluster again.
VOLUME = "slice volume"


class SliceVolume(FactBase):
    """VolumeState of an instance's slice volume (see sliceops/operations/volume.py)."""

    def command(self, image: str, mountpoint: str, staging: str, service: str, init: str) -> str:
        args = words((image, mountpoint, staging, service, init))
        return f"sh -c {quote(_SCRIPT)} sliceops-volume {args}"

    def process(self, output):
        return self.parse(output)

    @staticmethod
    def parse(lines: list[str]) -> VolumeState:
        st = VolumeState()
        subvol_ids: dict[str, str] = {}  # subvolume id -> path (relative to the volume's top)
        qgroups: dict[str, tuple[int, int | None]] = {}
        for line in lines:
            word, _, rest = line.strip().partition(" ")
            parts = rest.split()
            try:
                if word == "image":
                    st.image_size = int(parts[0])
                elif word == "avail":
                    st.avail = int(parts[0])
                elif word == "mount":
                    st.mounted, st.fstype = parts[0], parts[1]
                elif word == "subvol":
                    subvol_ids[parts[0]] = parts[1]
                elif word == "qgroup" and parts[0].startswith("0/"):
                    limit = None if parts[2] == "none" else int(parts[2])
                    qgroups[parts[0][2:]] = (int(parts[1]), limit)
                elif word in ("plain", "staged", "inner"):
                    getattr(st, word)[parts[1]] = int(parts[0])
                elif word == "boot":
                    st.at_boot = True
            except (IndexError, ValueError) as exc:
                raise RemoteStateError(f"cannot read the slice volume's state from {line!r}") from exc
        for sub_id, path in subvol_ids.items():
            if path.isdigit():
                used, limit = qgroups.get(sub_id, (0, None))
                st.subvolumes[int(path)] = {"id": int(sub_id), "used": used, "limit": limit}
        return st

    def default(self):
        return VolumeState()
