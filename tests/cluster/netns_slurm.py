"""A real Slurm cluster on this machine: a controller and N compute nodes, each in a network namespace.

Why: the cluster path (profiles/slurm, thinwire/launch.py) must be checked against Slurm itself, not
stand-ins. Debian's slurm-wlm and munge run the daemons; each daemon gets a network namespace of its
own (and a UTS namespace, so it has its own hostname), joined to a bridge that lives in one more
namespace by a veth pair, so every address exists only inside these namespaces and nothing touches
the machine's own network. The nodes' links are shaped with `tc tbf` (the inter-node tier; ranks of
one node talk over their namespace's loopback, unshaped), and each node's daemon, with every job step
it starts, is pinned to its own share of the machine's CPUs.

Names and the configuration are where a real cluster has them: `ip netns exec` mounts
/etc/netns/<namespace>/hosts over /etc/hosts and /etc/netns/<namespace>/slurm over /etc/slurm for
everything started in that namespace (daemons, job steps, the workflow), so node names resolve (the
first node is torchrun's and DeepSpeed's rendezvous address) and every Slurm command finds
/etc/slurm/slurm.conf without SLURM_CONF (which Snakemake's job step drops with the other SLURM_*
variables before it calls srun).

`SlurmCluster` is a context manager; it also stops on exit (atexit) and on SIGINT / SIGTERM / SIGHUP:
every process left in its namespaces is killed, every namespace (and with it every veth) deleted, the
hosts files and the run folder removed. Every command it runs and every wait has a timeout.

    python tests/cluster/netns_slurm.py up      # start, print how to reach it, stop on Ctrl-C
    python tests/cluster/netns_slurm.py down    # remove what a killed harness left behind
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurm-wlm", "slurm-client", "munge")  # slurmctld, slurmd, sbatch/srun/squeue, munged
DAEMONS = ("slurmctld", "slurmd", "munged")
NETNS_ETC = Path("/etc/netns")


class ClusterError(RuntimeError):
    """The cluster could not be started (the message names the step and its log)."""


@dataclass(frozen=True)
class ClusterSpec:
    """What to start. Names are prefixed so a leftover from a killed run is recognised and removed."""
    name: str = "thinwire-netns"      # slurm's ClusterName: what runs record as ran_on
    prefix: str = "twsl"              # namespaces <prefix>-br, <prefix>-ctl, <prefix>-n1 ...
    nodes: int = 2
    cpus_per_node: int = 4            # slots slurm schedules on a node (its tasks share the node's cores)
    node_cores: tuple[tuple[int, ...], ...] = ()  # cores each node is pinned to (default: the machine's, split)
    link: str = "1gbit"               # tc tbf rate of each node's link (the inter-node tier)
    subnet: str = "10.231.7"          # /24 inside the namespaces only
    real_memory_mb: int = 2000
    partitions: tuple[str, ...] = ("cpu", "gpu")  # the profile's partition names, all over every node
    # (and one partition per node, named as the node, to place a job on it)
    start_timeout_s: float = 60.0

    @property
    def controller(self) -> str:
        return f"{self.prefix}-ctl"

    @property
    def node_names(self) -> list[str]:
        return [f"{self.prefix}-n{i + 1}" for i in range(self.nodes)]

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br"

    def address(self, host: str) -> str:
        hosts = [self.controller, *self.node_names]
        return f"{self.subnet}.{10 + hosts.index(host)}"

    def cores(self) -> list[tuple[int, ...]]:
        if self.node_cores:
            return list(self.node_cores)
        cpus = sorted(os.sched_getaffinity(0))
        return [tuple(cpus[i::self.nodes]) or tuple(cpus) for i in range(self.nodes)]


def run(cmd: list[str], timeout: float = 30, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """A command with a timeout; a failure raises with its output."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()}")
    return proc


def install(timeout: float = 900) -> None:
    """Debian's packages, installed once (apt-get update only when something is missing)."""
    if all(shutil.which(d) or Path("/usr/sbin", d).exists() for d in DAEMONS) and shutil.which("sbatch"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], timeout=timeout, env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], timeout=timeout, env=env)


def namespaces(prefix: str) -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0].startswith(f"{prefix}-")]


def leftovers(prefix: str, run_dir: Path | None = None) -> list[str]:
    """What of a cluster with this prefix still exists: namespaces, veths in this namespace, hosts
    files, processes started from its run folder. Empty when everything was removed."""
    found = [f"netns {n}" for n in namespaces(prefix)]
    links = run(["ip", "-o", "link", "show"], check=False).stdout
    found += [f"link {line.split(':')[1].strip()}" for line in links.splitlines()
              if line.split(":")[1].strip().split("@")[0].startswith(prefix)]
    found += [f"hosts {p}" for p in NETNS_ETC.glob(f"{prefix}-*")] if NETNS_ETC.exists() else []
    if run_dir is not None:
        found += [f"folder {run_dir}"] if run_dir.exists() else []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(run_dir) in cmdline:
                found.append(f"process {proc.name}: {cmdline.replace(chr(0), ' ').strip()}")
    return found


def teardown(prefix: str) -> None:
    """Kill every process in the prefix's namespaces, delete the namespaces (their veths go with them)
    and the hosts files. Safe to call when nothing is there."""
    for ns in namespaces(prefix):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = [int(p) for p in run(["ip", "netns", "pids", ns], check=False).stdout.split()]
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while pids and time.monotonic() < deadline:
                pids = [int(p) for p in run(["ip", "netns", "pids", ns], check=False).stdout.split()]
                time.sleep(0.2)
            if not pids:
                break
        run(["ip", "netns", "del", ns], check=False)
    if NETNS_ETC.exists():
        for d in NETNS_ETC.glob(f"{prefix}-*"):
            shutil.rmtree(d, ignore_errors=True)


@dataclass
class SlurmCluster:
    """Start with `with SlurmCluster(spec) as c:`; `c.env` and `c.client(...)` reach the controller."""
    spec: ClusterSpec = field(default_factory=ClusterSpec)
    keep_logs: Path | None = None     # copy the daemons' logs here when stopping
    run_dir: Path = field(init=False)
    procs: dict[str, subprocess.Popen] = field(init=False, default_factory=dict)
    killed: set[str] = field(init=False, default_factory=set)  # daemons killed on purpose (fault tests)
    _stopped: bool = field(init=False, default=True)

    # --- start ------------------------------------------------------------------------------------------
    def __enter__(self) -> SlurmCluster:  # noqa: PYI034
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if os.geteuid() != 0:
            raise ClusterError("the cluster harness needs root (network namespaces, daemons)")
        install()
        teardown(self.spec.prefix)  # a killed earlier run's namespaces
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"{self.spec.prefix}-"))
        self.run_dir.chmod(0o755)
        self._stopped = False
        atexit.register(self.stop)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        try:
            self._network()
            self._config()
            self._munge()
            self._daemons()
        except BaseException:
            self.stop()
            raise

    def _on_signal(self, signum, frame) -> None:
        self.stop()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def _network(self) -> None:
        s = self.spec
        ip = ["ip", "netns", "exec"]
        run(["ip", "netns", "add", s.bridge])
        run([*ip, s.bridge, "ip", "link", "add", "br0", "type", "bridge"])
        run([*ip, s.bridge, "ip", "link", "set", "br0", "up"])
        hosts = ["127.0.0.1 localhost"] + [f"{s.address(h)} {h}" for h in [s.controller, *s.node_names]]
        for i, host in enumerate([s.controller, *s.node_names]):
            peer = f"{s.prefix}v{i}"
            run(["ip", "netns", "add", host])
            run(["ip", "link", "add", "eth0", "netns", host, "type", "veth", "peer", "name", peer, "netns", s.bridge])
            run([*ip, s.bridge, "ip", "link", "set", peer, "master", "br0", "up"])
            run([*ip, host, "ip", "addr", "add", f"{s.address(host)}/24", "dev", "eth0"])
            run([*ip, host, "ip", "link", "set", "eth0", "up"])
            run([*ip, host, "ip", "link", "set", "lo", "up"])
            if host != s.controller:  # a node's traffic to other nodes leaves through this shaped link
                run([*ip, host, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", s.link,
                     "burst", "256kb", "latency", "50ms"])
            (NETNS_ETC / host / "slurm").mkdir(parents=True, exist_ok=True)
            (NETNS_ETC / host / "hosts").write_text("\n".join([*hosts, ""]))

    def _config(self) -> None:
        s, d = self.spec, self.run_dir
        for sub in ("state", "spool"):
            (d / sub).mkdir()
        nodes = "\n".join(f"NodeName={n} NodeAddr={s.address(n)} CPUs={s.cpus_per_node} "
                          f"RealMemory={s.real_memory_mb} State=UNKNOWN" for n in s.node_names)
        parts = "\n".join([*(f"PartitionName={p} Nodes=ALL Default={'YES' if i == 0 else 'NO'} MaxTime=60 State=UP"
                              for i, p in enumerate(s.partitions)),
                            *(f"PartitionName={n} Nodes={n} MaxTime=60 State=UP" for n in s.node_names)])
        # MinJobAge: finished jobs stay visible to squeue for 10 minutes, long enough for the executor
        # plugin's squeue status queries (there is no accounting database: sacct cannot answer here).
        # SlurmdTimeout: a killed slurmd's node is declared down, and its job failed, within ~30 s.
        # config_overrides: a node has the slots named here (cpus_per_node), whatever cores it is pinned to.
        (d / "slurm.conf").write_text(f"""\
ClusterName={s.name}
SlurmctldHost={s.controller}({s.address(s.controller)})
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge.socket
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool/%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdTimeout=15
SlurmctldTimeout=30
MessageTimeout=20
KillWait=5
InactiveLimit=0
MinJobAge=600
SlurmdParameters=config_overrides
{nodes}
{parts}
""")
        # slurmd 22.05 loads a cgroup plugin even with proctrack/linuxproc and task/none; autodetection
        # fails on a hybrid hierarchy, so name v1 and let it find what is mounted.
        (d / "cgroup.conf").write_text("CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\nCgroupAutomount=no\n")
        for host in [s.controller, *s.node_names]:  # each namespace's /etc/slurm
            for conf in ("slurm.conf", "cgroup.conf"):
                shutil.copy(d / conf, NETNS_ETC / host / "slurm" / conf)

    def _munge(self) -> None:
        d = self.run_dir
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn("munged", None, ["munged", "--foreground", "--force", f"--key-file={key}",
                                     f"--socket={d}/munge.socket", f"--pid-file={d}/munged.pid",
                                     f"--log-file={d}/munged.log", f"--seed-file={d}/munged.seed"])
        self._wait("munge", lambda: run(["munge", "-n", f"--socket={d}/munge.socket"], check=False).returncode == 0,
                   d / "munged.log")

    def _daemons(self) -> None:
        s = self.spec
        self._spawn("slurmctld", s.controller, ["slurmctld", "-D", "-i"])
        self._wait("slurmctld", lambda: self.client(["scontrol", "ping"], check=False).stdout.count("UP") == 1,
                   self.run_dir / "slurmctld.log")
        for node in s.node_names:
            self.start_slurmd(node, wait=False)
        self._wait("slurmd", lambda: self.idle_nodes() == set(s.node_names), self.run_dir / "slurmctld.log")

    def start_slurmd(self, node: str, wait: bool = True) -> None:
        """Start (or restart) a node's slurmd, pinned to the node's cores; wait until the node is idle."""
        cores = dict(zip(self.spec.node_names, self.spec.cores(), strict=True))[node]
        self._spawn(node, node, ["slurmd", "-D", "-N", node], cores=cores)
        self.killed.discard(node)
        if wait:
            self._wait(f"slurmd on {node}", lambda: node in self.idle_nodes(), self.run_dir / f"slurmd-{node}.log")

    def _spawn(self, key: str, ns: str | None, cmd: list[str], cores: tuple[int, ...] = ()) -> None:
        """Start a daemon in the foreground (its pid is ours), with its own hostname inside `ns`."""
        if ns is not None:
            inner = f"hostname {ns} && exec {' '.join(cmd)}"
            pin = ["taskset", "-c", ",".join(map(str, cores))] if cores else []
            cmd = ["ip", "netns", "exec", ns, *pin, "unshare", "--uts", "sh", "-c", inner]
        log = open(self.run_dir / f"{key}.out", "w")  # noqa: SIM115 (the daemon's for its lifetime)
        self.procs[key] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env=self.env, start_new_session=True)
        log.close()

    def _wait(self, what: str, ready, log: Path) -> None:
        deadline = time.monotonic() + self.spec.start_timeout_s
        while time.monotonic() < deadline:
            dead = [k for k, p in self.procs.items() if p.poll() is not None and k not in self.killed]
            if dead:
                raise ClusterError(f"{', '.join(dead)} exited while waiting for {what}: "
                                   f"{self._tail(self.run_dir / f'{dead[0]}.out')} {self._tail(log)}")
            if ready():
                return
            time.sleep(0.5)
        raise ClusterError(f"{what} not ready after {self.spec.start_timeout_s:g} s: {self._tail(log)}")

    @staticmethod
    def _tail(path: Path, lines: int = 5) -> str:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # --- use --------------------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """The environment of slurm's client tools and of what they submit (sbatch exports it): this one,
        less a SLURM_CONF naming another cluster. The nodes share one kernel, so UCX (pip's MPICH) would
        pass messages between nodes through shared memory and never touch the shaped links: TCP only."""
        env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
        return {**env, "UCX_TLS": "tcp,self"}

    def in_controller(self, cmd: list[str]) -> list[str]:
        """`cmd` as it runs in the controller's namespace, where sbatch, squeue and srun reach slurmctld."""
        return ["ip", "netns", "exec", self.spec.controller, *cmd]

    def client(self, cmd: list[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        return run(self.in_controller(cmd), timeout=timeout, check=check, env=self.env)

    def idle_nodes(self) -> set[str]:
        out = self.client(["sinfo", "-h", "-N", "-o", "%N %T"], check=False).stdout
        return {n for n, state in (line.split() for line in out.splitlines() if line.strip()) if state == "idle"}

    def link_bytes(self) -> dict[str, int]:
        """Bytes each node has sent through its shaped link (tc's counter of the tbf qdisc)."""
        out = {}
        for node in self.spec.node_names:
            stats = run(["ip", "netns", "exec", node, "tc", "-s", "qdisc", "show", "dev", "eth0"]).stdout
            out[node] = int(stats.split(" Sent ")[1].split()[0])
        return out

    def kill_slurmd(self, node: str) -> None:
        """Kill a node's slurmd (SIGKILL: no goodbye to the controller), leaving its job steps running."""
        proc = self.procs[node]
        proc.kill()
        proc.wait(timeout=10)
        self.killed.add(node)

    # --- stop -------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop every daemon (SIGTERM, then SIGKILL after 10 s), kill whatever is left in the namespaces,
        delete them, the hosts files and the run folder (logs copied to keep_logs first)."""
        if self._stopped:
            return
        self._stopped = True
        for key in [*(n for n in self.procs if n not in ("slurmctld", "munged")), "slurmctld", "munged"]:
            proc = self.procs.get(key)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        teardown(self.spec.prefix)
        if self.keep_logs is not None:
            self.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in [*self.run_dir.glob("*.log"), *self.run_dir.glob("*.out")]:
                shutil.copy(log, self.keep_logs / log.name)
        shutil.rmtree(self.run_dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    spec = ClusterSpec()
    if argv[:1] == ["down"]:
        teardown(spec.prefix)
        left = leftovers(spec.prefix)
        print("nothing left" if not left else "\n".join(left))
        return 1 if left else 0
    if argv[:1] != ["up"]:
        print("usage: netns_slurm.py up|down", file=sys.stderr)
        return 2
    with SlurmCluster(spec) as c:
        print(f"cluster {spec.name} up: nodes {', '.join(sorted(c.idle_nodes()))}\n"
              f"  ip netns exec {spec.controller} sinfo\n"
              "Ctrl-C stops it.", flush=True)
        signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
