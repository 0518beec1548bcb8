#!/usr/bin/env bash
# A private single-node Slurm (with accounting) for the cellextract cluster tests.
#
#   tests/cluster/slurm.sh install   apt-get install the Debian packages if missing
#   tests/cluster/slurm.sh start     start munged, MariaDB, slurmdbd, slurmctld, slurmd (idempotent)
#   tests/cluster/slurm.sh stop      cancel all jobs, stop the daemons by their pid files
#   tests/cluster/slurm.sh status    exit 0 if every daemon runs and the node is usable
#   tests/cluster/slurm.sh env       print `export SLURM_CONF=...` (eval "$(slurm.sh env)")
#   tests/cluster/slurm.sh purge     stop, then delete the state folder
#
# Everything (configs, munge key and socket, spool, logs, pid files, the MariaDB datadir) lives in
# $CELLEXTRACT_SLURM_DIR (default /tmp/cellextract-slurm). Nothing is written to /etc and nothing
# listens for or contacts anything but loopback, except slurmctld/slurmd/slurmdbd, which Slurm binds
# to all interfaces (they are only ever contacted through localhost). Needs root (SlurmUser=root).
#
# Clients find this cluster through SLURM_CONF=$CELLEXTRACT_SLURM_DIR/etc/slurm.conf; slurmdbd
# reads slurmdbd.conf from the same folder. The partition is `main` (the name profiles/slurm uses).
# While it runs, /etc/slurm/slurm.conf is a symlink to that file (removed by `stop`): the slurm
# executor plugin's job step drops SLURM_* variables (SLURM_CONF too) before it calls `srun`
# inside the job, so `srun` must find the configuration at the default path. An existing
# /etc/slurm/slurm.conf that is not this symlink is never touched (start fails instead).
set -euo pipefail

D="${CELLEXTRACT_SLURM_DIR:-/tmp/cellextract-slurm}"
PARTITION="${CELLEXTRACT_SLURM_PARTITION:-main}"
CLUSTER=cellextract
CTLD_PORT="${CELLEXTRACT_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${CELLEXTRACT_SLURMD_PORT:-6818}"
DBD_PORT="${CELLEXTRACT_SLURMDBD_PORT:-6819}"
DB_PORT="${CELLEXTRACT_MARIADB_PORT:-3307}"
DB_USER=slurm
DB_PASS=cellextract-slurm-test   # private, loopback-only test database
DEF_MEM_PER_CPU=1000             # MB; without it one job takes the whole node's memory
ETC_CONF=/etc/slurm/slurm.conf
PACKAGES="slurmctld slurmd slurm-client munge slurmdbd mariadb-server"

export SLURM_CONF="$D/etc/slurm.conf"
MUNGE_SOCKET="$D/munge/munge.socket.2"

log() { echo "slurm.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- processes

# alive PIDFILE NAME: the pid in PIDFILE exists, is not a zombie, and its command is NAME.
# (Daemons re-parented to PID 1 stay zombies on this machine, so `kill -0` is not enough.)
alive() {
    local pidfile=$1 name=$2 pid stat state comm
    [[ -s $pidfile ]] || return 1
    pid=$(tr -dc '0-9' 2>/dev/null <"$pidfile") || return 1  # the daemon may remove it meanwhile
    [[ -n $pid && -r /proc/$pid/stat ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    state=${stat##*) }
    state=${state%% *}
    [[ $state != Z && $state != X ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$name"* ]]
}

pid_of() { tr -dc '0-9' <"$1"; }

# stop_daemon PIDFILE NAME: SIGTERM, wait up to 20 s, then SIGKILL.
stop_daemon() {
    local pidfile=$1 name=$2 pid i
    if ! alive "$pidfile" "$name"; then
        rm -f "$pidfile"
        return 0
    fi
    pid=$(pid_of "$pidfile")
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        alive "$pidfile" "$name" || { rm -f "$pidfile"; return 0; }
        sleep 0.2
    done
    log "$name did not stop after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 1 25); do
        alive "$pidfile" "$name" || { rm -f "$pidfile"; return 0; }
        sleep 0.2
    done
    die "could not stop $name (pid $pid)"
}

# wait_for WHAT SECONDS COMMAND...: poll COMMAND every 0.25 s for at most SECONDS (wall clock).
wait_for() {
    local what=$1 secs=$2 deadline
    shift 2
    deadline=$((SECONDS + secs))
    while (( SECONDS < deadline )); do
        if [[ $(type -t "$1") == function ]]; then
            "$@" >/dev/null 2>&1 && return 0
        else
            timeout 10 "$@" >/dev/null 2>&1 && return 0
        fi
        sleep 0.25
    done
    log "timed out after ${secs}s waiting for $what"
    return 1
}

# ---------------------------------------------------------------- install

cmd_install() {
    local missing=0 p
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing=1
    done
    if [[ $missing == 0 ]]; then
        log "packages already installed"
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "installing Slurm needs root (apt-get install $PACKAGES)"
    log "installing $PACKAGES"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # policy-rc.d on this machine keeps the packages' own services from starting.
    apt-get install -y -q $PACKAGES >/dev/null
}

# ---------------------------------------------------------------- configuration

write_configs() {
    mkdir -p "$D"/{etc,log,run,spool/ctld,spool/d,munge,mysql}
    chmod 755 "$D"

    # Node layout as slurmd detects it, renamed to localhost; memory left for other users.
    local layout mem real
    layout=$(slurmd -C | head -n1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ *RealMemory=[0-9]*//')
    mem=$(slurmd -C | head -n1 | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    real=$(( mem * 3 / 4 ))
    (( real > 16000 )) && real=16000

    cat >"$D/etc/slurm.conf.new" <<EOF
# Generated by tests/cluster/slurm.sh (private single-node test cluster).
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
MailProg=/bin/true
StateSaveLocation=$D/spool/ctld
SlurmdSpoolDir=$D/spool/d
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM_PER_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# For the slurmdbd connection this is the munge socket (AuthInfo only covers the other connections).
AccountingStoragePass=$MUNGE_SOCKET
# keep sbatch --comment (the executor plugin puts rule and wildcards there) in sacct
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 $layout RealMemory=$real State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$D/etc/slurm.conf.new" "$D/etc/slurm.conf"
    link_default_conf

    cat >"$D/etc/slurmdbd.conf" <<EOF
# Generated by tests/cluster/slurm.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$D/log/slurmdbd.log
PidFile=$D/run/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$D/etc/slurmdbd.conf"
}

link_default_conf() {
    if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$D/etc/slurm.conf" ]]; then return 0; fi
    if [[ -e $ETC_CONF || -L $ETC_CONF ]]; then
        die "$ETC_CONF exists and is not this test cluster's; not touching it"
    fi
    mkdir -p "$(dirname "$ETC_CONF")"
    ln -s "$D/etc/slurm.conf" "$ETC_CONF"
}

unlink_default_conf() {
    if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$D/etc/slurm.conf" ]]; then rm -f "$ETC_CONF"; fi
}

# ---------------------------------------------------------------- daemons

start_munge() {
    if alive "$D/munge/munged.pid" munged; then return 0; fi
    chown munge:munge "$D/munge"
    chmod 700 "$D/munge"
    if [[ ! -s $D/munge/munge.key ]]; then
        dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
    fi
    chown munge:munge "$D/munge/munge.key"
    chmod 400 "$D/munge/munge.key"
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged --force \
        --socket="$MUNGE_SOCKET" --key-file="$D/munge/munge.key" \
        --pid-file="$D/munge/munged.pid" --log-file="$D/munge/munged.log" \
        --seed-file="$D/munge/munged.seed" </dev/null
    wait_for munged 20 alive "$D/munge/munged.pid" munged || die "munged did not start ($D/munge/munged.log)"
    wait_for munge-socket 20 test -S "$MUNGE_SOCKET" || die "no munge socket ($D/munge/munged.log)"
}

mysql_cmd() { mariadb --no-defaults -S "$D/mysql/mysqld.sock" -u root "$@"; }

start_mariadb() {
    if alive "$D/run/mariadbd.pid" mariadbd; then return 0; fi
    if [[ ! -d $D/mysql/data/mysql ]]; then
        log "initialising MariaDB datadir"
        rm -rf "$D/mysql/data"
        mariadb-install-db --no-defaults --datadir="$D/mysql/data" --user=root \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$D/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed ($D/log/mariadb-install.log)"
    fi
    log "starting mariadbd (127.0.0.1:$DB_PORT)"
    setsid /usr/sbin/mariadbd --no-defaults --user=root --datadir="$D/mysql/data" \
        --socket="$D/mysql/mysqld.sock" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --skip-name-resolve --pid-file="$D/run/mariadbd.pid" --log-error="$D/log/mariadbd.log" \
        --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
    wait_for mariadbd 60 mysql_cmd -e "SELECT 1" || die "MariaDB did not start ($D/log/mariadbd.log)"
    mysql_cmd -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'127.0.0.1'; FLUSH PRIVILEGES;" \
        || die "could not create the accounting database user"
}

start_slurmdbd() {
    if alive "$D/run/slurmdbd.pid" slurmdbd; then return 0; fi
    log "starting slurmdbd (localhost:$DBD_PORT)"
    /usr/sbin/slurmdbd </dev/null >>"$D/log/slurmdbd.out" 2>&1 || die "slurmdbd failed ($D/log/slurmdbd.log)"
    wait_for slurmdbd 30 sacctmgr -n show cluster || die "slurmdbd does not answer ($D/log/slurmdbd.log)"
}

start_slurmctld() {
    if alive "$D/run/slurmctld.pid" slurmctld; then return 0; fi
    log "starting slurmctld (localhost:$CTLD_PORT)"
    /usr/sbin/slurmctld </dev/null >>"$D/log/slurmctld.out" 2>&1 || die "slurmctld failed ($D/log/slurmctld.log)"
    wait_for slurmctld 30 scontrol ping || die "slurmctld does not answer ($D/log/slurmctld.log)"
}

start_slurmd() {
    if alive "$D/run/slurmd.pid" slurmd; then return 0; fi
    log "starting slurmd (node localhost)"
    /usr/sbin/slurmd -N localhost </dev/null >>"$D/log/slurmd.out" 2>&1 || die "slurmd failed ($D/log/slurmd.log)"
}

node_ready() {
    local state
    state=$(sinfo -h -N -n localhost -o '%T' 2>/dev/null | head -n1)
    [[ $state == idle* || $state == mixed* || $state == allocated* ]]
}

assoc_ready() {
    sacctmgr -n -P show assoc where cluster="$CLUSTER" account=root user=root format=user 2>/dev/null | grep -q root
}

cmd_start() {
    [[ $(id -u) == 0 ]] || die "needs root (the test cluster runs with SlurmUser=root)"
    command -v slurmctld >/dev/null || die "Slurm is not installed: run '$0 install'"
    write_configs
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurmctld
    start_slurmd
    wait_for node 60 node_ready || die "node 'localhost' not ready: $(sinfo -N 2>&1 | tail -n1) ($D/log/slurmd.log)"
    # slurmctld registers the cluster in slurmdbd; the root account/user association comes with it.
    if ! wait_for association 30 assoc_ready; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
        sacctmgr -i add user root account=root cluster="$CLUSTER" >/dev/null 2>&1 || true
        wait_for association 30 assoc_ready || die "no accounting association for root in cluster $CLUSTER"
    fi
    log "running: partition $PARTITION on node localhost; export SLURM_CONF=$SLURM_CONF"
}

cmd_stop() {
    if [[ -f $SLURM_CONF ]] && alive "$D/run/slurmctld.pid" slurmctld; then
        scancel --full --quiet --user=root 2>/dev/null || true
        # give slurmd a moment to kill the job steps before it goes away itself
        wait_for no-jobs 15 bash -c '[[ -z $(squeue -h -o %i 2>/dev/null) ]]' || true
    fi
    stop_daemon "$D/run/slurmd.pid" slurmd
    stop_daemon "$D/run/slurmctld.pid" slurmctld
    stop_daemon "$D/run/slurmdbd.pid" slurmdbd
    stop_daemon "$D/run/mariadbd.pid" mariadbd
    stop_daemon "$D/munge/munged.pid" munged
    unlink_default_conf
    # job steps still around (slurmstepd and the jobs' processes) have no parent daemon any more
    local pid
    for pid in $(pgrep -x slurmstepd 2>/dev/null || true); do
        if grep -qz "$D" "/proc/$pid/environ" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    log "stopped"
}

cmd_status() {
    local rc=0 pair
    for pair in munge/munged.pid:munged run/mariadbd.pid:mariadbd run/slurmdbd.pid:slurmdbd \
                run/slurmctld.pid:slurmctld run/slurmd.pid:slurmd; do
        if alive "$D/${pair%%:*}" "${pair##*:}"; then
            echo "${pair##*:}: running (pid $(pid_of "$D/${pair%%:*}"))"
        else
            echo "${pair##*:}: stopped"
            rc=1
        fi
    done
    if [[ $rc == 0 ]]; then
        if node_ready; then
            sinfo -N -o '%N %P %T %c %m'
        else
            echo "node localhost: not ready"
            rc=1
        fi
    fi
    return $rc
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$SLURM_CONF" ;;
    purge) cmd_stop; rm -rf "$D"; log "removed $D" ;;
    *) echo "usage: $0 install|start|stop|status|env|purge" >&2; exit 2 ;;
esac
