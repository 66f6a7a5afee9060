"""Facts about the host itself: its init system and a service's state under it, its addresses,
a digest a completed step recorded, and the slice data directories' group and mode."""

from __future__ import annotations

from pyinfra.api import FactBase

from sliceops.shell import quote


class InitSystem(FactBase):
    """"systemd" when systemd is PID 1 (sd_booted()'s test), else "sysv".

    pyinfra's own service operations pick systemd whenever `systemctl` exists, which is
    wrong in containers and on hosts where the binary is installed but not running.
    """

    command = "if [ -d /run/systemd/system ]; then echo systemd; else echo sysv; fi"

    def process(self, output):
        return output[0].strip() if output else "sysv"

    def default(self):
        return "sysv"


class ServiceState(FactBase):
    """{"running": bool, "enabled": bool} for a service under the given init system."""

    def command(self, service: str, init: str) -> str:
        name = quote(service)
        if init == "systemd":
            return (
                f"systemctl is-active --quiet {name} && echo running; "
                f"systemctl is-enabled --quiet {name} 2>/dev/null && echo enabled; true"
            )
        # LSB: `status` exits 0 when running, 3 when not; boot links under /etc/rc2.d.
        return (
            f"[ -x /etc/init.d/{name} ] && /etc/init.d/{name} status >/dev/null 2>&1 && echo running; "
            f"ls /etc/rc2.d/S??{name} >/dev/null 2>&1 && echo enabled; true"
        )

    def process(self, output):
        words = {line.strip() for line in output}
        return {"running": "running" in words, "enabled": "enabled" in words}

    def default(self):
        return {"running": False, "enabled": False}


class MemTotal(FactBase):
    """The target's RAM in bytes (MemTotal of /proc/meminfo, which is in KiB)."""

    command = "awk '/^MemTotal:/ {print $2}' /proc/meminfo"

    def process(self, output):
        return int(output[0]) * 1024


class HostAddresses(FactBase):
    """[(interface, "address/prefix")] of every address the target holds ("?" for the
    interface where `ip` is missing and the kernel's local IPv4 routes are read instead)."""

    command = (
        "if command -v ip >/dev/null 2>&1; then ip -o addr show | awk '{print $2, $4}'; "
        # /proc/net/fib_trie lists each local IPv4 address on the line before "/32 host LOCAL".
        "else awk '/\\/32 host LOCAL/ {print \"?\", prev \"/32\"} {prev = $2}' /proc/net/fib_trie | sort -u; fi"
    )

    def process(self, output):
        return self.parse(output)

    @staticmethod
    def parse(lines: list[str]) -> list[tuple[str, str]]:
        out = []
        for line in lines:
            words = line.split()
            if len(words) == 2 and "/" in words[1]:
                out.append((words[0].split("@")[0], words[1]))
        return out

    def default(self):
        return []


class RecordedDigest(FactBase):
    """The digest a file records (written once a step completed, see operations.system.stamped), or None."""

    def command(self, path: str) -> str:
        return f"cat {quote(path)} 2>/dev/null || true"

    def process(self, output):
        return output[0].strip() if output else None

    def default(self):
        return None


class FileState(FactBase):
    """{"user", "group", "mode" (octal digits), "sha1"} of a file, in one command; None when
    it does not exist (see operations.system.config_file)."""

    def command(self, path: str) -> str:
        p = quote(path)
        return f"[ -f {p} ] && stat -c '%U %G %a' {p} && sha1sum {p} | cut -d' ' -f1; true"

    def process(self, output):
        if len(output) < 2 or len(output[0].split()) != 3:
            return None
        user, group, mode = output[0].split()
        return {"user": user, "group": group, "mode": mode, "sha1": output[1].strip()}

    def default(self):
        return None


class SystemUser(FactBase):
    """{"home", "shell", "group" (primary), "groups" (all)} of one user, in one command (pyinfra's
    Users fact reads every user of the host, several processes each); None when it does not exist."""

    def command(self, user: str) -> str:
        u = quote(user)
        return (f"if getent passwd {u} >/dev/null; then getent passwd {u} | cut -d: -f6,7; "
                f"id -gn {u}; id -Gn {u}; fi; true")

    def process(self, output):
        if len(output) < 3 or ":" not in output[0]:
            return None
        home, shell = output[0].strip().split(":", 1)
        return {"home": home, "shell": shell, "group": output[1].strip(), "groups": output[2].split()}

    def default(self):
        return None


class DataDirs(FactBase):
    """{path: (group, octal mode)} for every directory under the slices' data root, in one call."""

    def command(self, root: str) -> str:
        # The glob is the shell's, after the quoted root: it lists only that root's entries.
        return f"stat -c '%n %G %a' {quote(root)}/* 2>/dev/null; true"

    def process(self, output):
        dirs = {}
        for line in output:
            parts = line.split()
            if len(parts) == 3:
                dirs[parts[0]] = (parts[1], parts[2])
        return dirs

    def default(self):
        return {}


class TcpListeners(FactBase):
    """The local "address:port" pairs a TCP socket listens on (`ss -Hltn`), e.g.
    "172.30.0.1:5432": whether PostgreSQL listens on the slice bridge's address."""

    command = "ss -Hltn 2>/dev/null | awk '{print $4}'; true"

    def process(self, output):
        return sorted({line.strip() for line in output if line.strip()})

    def default(self):
        return []
