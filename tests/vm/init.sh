#!/bin/sh
# PID 1 of a `cargo xtask vm-test` guest (busybox sh). Mounts cgroup v2 as the only hierarchy,
# or with `coroner.cgroup=v1` on the kernel command line the v1 memory controller, starts the host-built coroner, stages the deaths of tests/vm/expected.json in kubelet-style
# container cgroups, stops the agent and reports on /dev/ttyS1 (protocol: xtask/src/vm/serial.rs).
# PID 1 plays the container runtime's shim: every victim is its child, from outside the
# container's cgroup, so each is a container's main process.

/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s /bin
export PATH=/bin:/usr/local/bin NO_COLOR=1

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
CGROUP=v2
grep -qw coroner.cgroup=v1 /proc/cmdline && CGROUP=v1
if [ $CGROUP = v1 ]; then
    # As a v1 node has it: a tmpfs of controller directories, the memory controller in one.
    mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
    mkdir /sys/fs/cgroup/memory
    mount -t cgroup -o memory memory /sys/fs/cgroup/memory
else
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
fi
mount -t bpf bpf /sys/fs/bpf
# As on a node: tracefs mounted by the host (systemd does; the DaemonSet mounts it in), and
# kernel addresses hidden from whoever lacks CAP_SYSLOG, as the agent does.
mount -t tracefs tracefs /sys/kernel/tracing
echo 1 > /proc/sys/kernel/kptr_restrict
# Debian's kernels default to perf_event_paranoid 3, which refuses perf_event_open (the
# syscall tracepoints behind exec failures) to all but CAP_SYS_ADMIN, CAP_PERFMON or not: the
# agent then runs degraded. Nodes that want exec failures set it to 2, the upstream default.
PARANOID=$(cat /proc/sys/kernel/perf_event_paranoid)
echo 2 > /proc/sys/kernel/perf_event_paranoid

exec 3>/dev/ttyS1
stty -F /dev/ttyS1 raw -echo 2>/dev/null
report() { echo "@@$*" >&3; }
finish() {
    report done
    sync
    poweroff -f
}
fail() {
    report error "$*"
    [ -s /tmp/coroner.log ] && { report begin agent-log; cat /tmp/coroner.log >&3; report end agent-log; }
    finish
}

AGENT_URL=http://127.0.0.1:9750
report uname "$(uname -r)"
report note "cgroup $CGROUP"
report note "perf_event_paranoid was $PARANOID, set to 2"
if [ $CGROUP = v1 ]; then
    CG=/sys/fs/cgroup/memory
    [ -e $CG/memory.limit_in_bytes ] || fail "no cgroup v1 memory controller"
    # Limits count for a cgroup's descendants (always so from 5.11 on; 5.10 asks for it).
    echo 1 > $CG/memory.use_hierarchy 2>/dev/null
else
    CG=/sys/fs/cgroup
    grep -qw memory $CG/cgroup.controllers || fail "no memory controller in cgroup v2: $(cat $CG/cgroup.controllers)"
fi
[ -r /sys/kernel/btf/vmlinux ] || fail "no /sys/kernel/btf/vmlinux"
ip link set lo up || ifconfig lo 127.0.0.1 up
# The node-wide OOM needs the victim's allocation to succeed and fail only when touched.
echo 1 > /proc/sys/vm/overcommit_memory

# --- the agent -----------------------------------------------------------------------------
# As the DaemonSet runs it: uid 0 with only CAP_BPF (39), CAP_PERFMON (38) and
# CAP_SYS_RESOURCE (24; BPF maps count against RLIMIT_MEMLOCK before 5.11). It must outlive the
# node-wide OOM: -1000 (set before the capabilities go) makes it unkillable by the OOM killer.
(echo -1000 > /proc/self/oom_score_adj && exec coroner-victim bounded 24,38,39 coroner --kube off \
    --listen 127.0.0.1:9750 --events-json /tmp/records.jsonl --node-name vm) 2>/tmp/coroner.log &
agent=$!
touch /tmp/coroner.log
tail -f /tmp/coroner.log > /dev/console 2>/dev/null &
started=$(date +%s)
until wget -q -O /dev/null "$AGENT_URL/healthz" 2>/dev/null; do
    kill -0 $agent 2>/dev/null || fail "coroner exited before it was healthy"
    [ $(($(date +%s) - started)) -lt 180 ] || fail "coroner not healthy after 180 s: $(wget -q -O - $AGENT_URL/healthz 2>&1)"
    sleep 0.5
done
report note "coroner healthy after $(($(date +%s) - started)) s"
# What the tracepoints carry on this kernel (from tracefs), for the
# report: their BTF prototypes are what the agent reads, these fields say the same in text.
report begin kernel
for event in sched/sched_process_exit signal/signal_generate oom/mark_victim; do
    echo "$event: $(sed -n 's/^[[:space:]]*field:\([^;]*\);.*/\1/p' /sys/kernel/tracing/events/$event/format |
        grep -v common_ | tr '\n' ',' | sed 's/,$//; s/,/, /g')" >&3
done
report end kernel

# --- staging -------------------------------------------------------------------------------
# container NAME PATH [MEMORY_MAX]: creates the memory cgroup PATH (relative to the root),
# delegating the memory controller down every level, and reports it as case NAME.
container() {
    dir=$CG
    for part in $(echo "${2#/}" | tr / ' '); do
        [ $CGROUP = v1 ] || echo +memory > "$dir/cgroup.subtree_control" || fail "enabling memory in $dir"
        dir=$dir/$part
        [ -d "$dir" ] || mkdir "$dir" || fail "mkdir $dir"
    done
    if [ -n "$3" ]; then
        limit=memory.max
        [ $CGROUP = v2 ] || limit=memory.limit_in_bytes
        echo "$3" > "$dir/$limit" || fail "$limit of $dir"
    fi
    report case "$1" "$2"
}
# limit PATH BYTES: the memory limit of the cgroup PATH (a pod's, for a pod-level limit).
limit() {
    file=memory.max
    [ $CGROUP = v2 ] || file=memory.limit_in_bytes
    echo "$2" > "$CG$1/$file" || fail "$file of $1"
}
# spawn LABEL PATH ARGS…: coroner-victim ARGS in cgroup PATH; its pid is reported and in $pid.
spawn() {
    label=$1 path=$2
    shift 2
    # By absolute path: a PATH search would fail execve on /bin first (see case path-search).
    sh -c 'echo $$ > "$0/cgroup.procs" && exec /usr/local/bin/coroner-victim "$@"' "$CG$path" "$@" &
    pid=$!
    report pid "$label" "$pid"
}
# The kubelet's two cgroup drivers. Pod uids are spelled with `_` in systemd slice names.
sd() { # QOS_SLICE POD_UID RUNTIME_PREFIX ID  (QOS_SLICE empty for a guaranteed pod)
    uid_=$(echo "$2" | tr - _)
    if [ -n "$1" ]; then
        echo "/kubepods.slice/kubepods-$1.slice/kubepods-$1-pod$uid_.slice/$3-$4.scope"
    else
        echo "/kubepods.slice/kubepods-pod$uid_.slice/$3-$4.scope"
    fi
}
fs() { # QOS POD_UID ID  (QOS empty for a guaranteed pod)
    echo "/kubepods${1:+/$1}/pod$2/$3"
}
hexid() { # a 64-hex container id from an 8-hex seed
    echo "$1$1$1$1$1$1$1$1"
}

C=$(sd burstable 0a000001-0000-4000-8000-000000000001 cri-containerd "$(hexid 0a000001)")
container exit0 "$C"; spawn exit0 "$C" exit 0; wait $pid

C=$(fs besteffort 0a000002-0000-4000-8000-000000000002 "$(hexid 0a000002)")
container exit1 "$C"; spawn exit1 "$C" exit 1; wait $pid

C=$(sd "" 0a000003-0000-4000-8000-000000000003 crio "$(hexid 0a000003)")
container notfound "$C"; spawn notfound "$C" exec /no/such/binary; wait $pid

C=$(fs burstable 0a000004-0000-4000-8000-000000000004 "$(hexid 0a000004)")
container shell-notfound "$C"; spawn shell-notfound "$C" shell-exec /no/such/tool; wait $pid

# A shell's PATH search: execve("/bin/coroner-victim") fails with ENOENT, the next entry
# succeeds, and the program exits 1 — an error, not a missing command.
C=$(sd burstable 0a00000d-0000-4000-8000-00000000000d cri-containerd "$(hexid 0a00000d)")
container path-search "$C"
PATH=/bin:/usr/local/bin sh -c 'echo $$ > "$0/cgroup.procs" && exec coroner-victim exit 1' "$CG$C" &
pid=$!; report pid path-search $pid; wait $pid

C=$(sd burstable 0a000005-0000-4000-8000-000000000005 docker "$(hexid 0a000005)")
container memcg-oom "$C" 64M; spawn memcg-oom "$C" alloc 256; wait $pid

C=$(fs "" 0a000006-0000-4000-8000-000000000006 "$(hexid 0a000006)")
container child-oom "$C" 64M; spawn child-oom "$C" child-alloc 256 1; wait $pid

# SIGTERM from another container of the same pod.
C=$(fs "" 0a000007-0000-4000-8000-000000000007 "$(hexid 0a000007)")
S=$(fs "" 0a000007-0000-4000-8000-000000000007 "$(hexid 0b000007)")
container sigterm "$C"; spawn sigterm "$C" sleep 60; target=$pid
sleep 0.5
container sigterm-sender "$S"; spawn sigterm-sender "$S" kill 15 $target; wait $pid; wait $target

# SIGTERM ignored, SIGKILL a second later: both from PID 1, a host process.
C=$(sd besteffort 0a000008-0000-4000-8000-000000000008 cri-containerd "$(hexid 0a000008)")
container grace "$C"; spawn grace "$C" ignore-term 60
sleep 0.5; kill -TERM $pid; sleep 1; kill -KILL $pid; wait $pid

C=$(sd burstable 0a000009-0000-4000-8000-000000000009 cri-containerd "$(hexid 0a000009)")
container killed "$C"; spawn killed "$C" sleep 60
sleep 0.5; kill -KILL $pid; wait $pid

C=$(fs burstable 0a00000a-0000-4000-8000-00000000000a "crio-$(hexid 0a00000a)")
container segv "$C"; spawn segv "$C" segv; wait $pid

C=$(sd burstable 0a00000b-0000-4000-8000-00000000000b crio "$(hexid 0a00000b)")
container abort "$C"; spawn abort "$C" abort; wait $pid

# A pod-level limit: the pod's memory cgroup hits its limit; the container has none of its own.
P=/kubepods/burstable/pod0a00000e-0000-4000-8000-00000000000e
C=$(fs burstable 0a00000e-0000-4000-8000-00000000000e "$(hexid 0a00000e)")
container pod-oom "$C"; limit "$P" 96M; spawn pod-oom "$C" alloc 256; wait $pid

# The pod's limit hit while one of its containers (the largest, so the victim) sits just under
# its own limit: usage alone would name that container; the memory cgroups' own OOM counters
# name the pod. Then the allocator itself, at the pod's limit again.
P=/kubepods/burstable/pod0a00000f-0000-4000-8000-00000000000f
C=$(fs burstable 0a00000f-0000-4000-8000-00000000000f "$(hexid 0a00000f)")
D=$(fs burstable 0a00000f-0000-4000-8000-00000000000f "$(hexid 0b00000f)")
container near-own-limit "$C"; limit "$P" 96M
spawn near-own-limit "$C" alloc 60; holder=$pid
sleep 2
usage=memory.current; [ $CGROUP = v2 ] || usage=memory.usage_in_bytes
limit "$C" $(( $(cat "$CG$C/$usage") + 131072 ))
container pod-limit-hit "$D"; spawn pod-limit-hit "$D" alloc 256; wait $pid; wait $holder

# The node-wide OOM: no memory.max anywhere on the path; the guest's RAM runs out.
C=$(sd burstable 0a00000c-0000-4000-8000-00000000000c cri-containerd "$(hexid 0a00000c)")
container global-oom "$C"; spawn global-oom "$C" alloc 2048; wait $pid
kill -0 $agent 2>/dev/null || fail "coroner did not survive the node-wide OOM"
wget -q -O /dev/null "$AGENT_URL/healthz" || report error "coroner unhealthy after the node-wide OOM"

# --- collection ----------------------------------------------------------------------------
report lost "$(wget -q -O - $AGENT_URL/metrics | awk '/^coroner_events_lost_total/ { n += $2 } END { print n + 0 }')"
sleep 1
kill -TERM $agent
wait $agent
report agent-exit $?
report begin records
cat /tmp/records.jsonl >&3
report end records
report begin agent-log
cat /tmp/coroner.log >&3
report end agent-log
# The kernel's own account of each OOM kill: victim, scope, RSS — the records' ground truth.
report begin kernel-oom
dmesg | grep 'Killed process' >&3
report end kernel-oom
finish
