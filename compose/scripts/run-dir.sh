# Sourced by up.sh, down.sh and logs.sh: the run folder and who in it is ours.
# Needs PY and HERE. Sets RUN_DIR (absolute) and exports PLATFORM_RUN_DIR=RUN_DIR,
# which every process `make up` starts inherits; that mark tells our processes
# apart from a reused pid.

# A bad setting has printed its one line; stop as a configuration error (2).
RUN_DIR=$("$PY" "$HERE/probe.py" setting run_dir) || exit 2
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd -P)
export PLATFORM_RUN_DIR=$RUN_DIR

# is_ours PID: PID is alive (not a zombie) and was started for this run folder.
is_ours() {
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    if [ -r "/proc/$pid/stat" ]; then
        # Field 3 of /proc/PID/stat is the state; Z is a zombie waiting to be reaped.
        local line
        read -r line 2>/dev/null <"/proc/$pid/stat" || return 1
        line=${line##*) }
        [ "${line%% *}" != Z ] || return 1
    fi
    if [ -r "/proc/$pid/environ" ]; then
        # 2>/dev/null first: a process that exits meanwhile makes the redirection fail.
        tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qxF "PLATFORM_RUN_DIR=$RUN_DIR"
    else
        # No /proc (macOS): trust the pid file if the command looks like ours.
        ps -p "$pid" -o command= 2>/dev/null | grep -qE "celery|workers\.ops\.(flower|worker_group)"
    fi
}

# running_pid NAME: print NAME's pid if its pid file names a live process of ours.
running_pid() {
    local file="$RUN_DIR/$1.pid" pid
    [ -f "$file" ] || return 1
    pid=$(cat "$file" 2>/dev/null) || return 1
    is_ours "$pid" || return 1
    echo "$pid"
}
