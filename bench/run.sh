#!/usr/bin/env bash
# run.sh benchmarks cryptpt against a native directory and gocryptfs, in one
# run with the configurations interleaved so that noise hits all of them alike.
# See bench/README.md. Writes bench/results/<UTC date>-<host>.{md,svg,json}.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CRYPTPT="$ROOT/bin/cryptpt"

SIZE=256M        # fio file size
RUNTIME=1        # fio runtime per job, seconds
REPS=3           # repetitions; the report shows median (min-max)
COPIES=2         # copies of $GOROOT/src in the small-files tree (a git checkout)
TREE=src         # part of $GOROOT that the tarball copies
BUILD_PKG=       # package compiled in the mount; none by default (opt-in, see bench/README.md)
OUT="$ROOT/bench/results"
WORK=${BENCH_DIR:-/var/tmp/cryptpt-bench}
KEEP=0
ALL_CONFIGS="native cryptpt-pt cryptpt-nopt cryptpt-enc cryptpt-encwb cryptpt-mixed gocryptfs"
# cryptpt-nopt and cryptpt-enc are opt-in (--configs), to keep the default
# run near 15 minutes: cryptpt-enc's connection is cryptpt-mixed's
# (passthrough on, no writeback cache, the benchmark's files encrypted), and
# cryptpt-nopt answers no open question. See bench/README.md.
CONFIGS="native cryptpt-pt cryptpt-encwb cryptpt-mixed gocryptfs"

usage() {
	cat <<EOF
Usage: bench/run.sh [options]
  --size SIZE      fio file size (default $SIZE)
  --runtime SEC    fio runtime per job in seconds (default $RUNTIME)
  --reps N         repetitions, report median (min-max) (default $REPS)
  --copies N       copies of \$GOROOT/$TREE in the small-files tree (default $COPIES)
  --build PKG      add a build step: go build PKG of the cryptpt module in the mount
                   from an empty GOCACHE (./config, or ./cmd/cryptpt; default: no build)
  --configs LIST   space-separated subset of: $ALL_CONFIGS
                   (default: $CONFIGS)
  --quick          tiny sizes, a smoke run in about a minute
  --out DIR        where results go (default bench/results)
  --dir DIR        work directory on the disk to test (default \$BENCH_DIR or /var/tmp/cryptpt-bench)
  --keep           keep the work directory afterwards
EOF
}

while [ $# -gt 0 ]; do
	case "$1" in
	--size) SIZE=$2; shift 2 ;;
	--runtime) RUNTIME=$2; shift 2 ;;
	--reps) REPS=$2; shift 2 ;;
	--copies) COPIES=$2; shift 2 ;;
	--build) BUILD_PKG=$2; shift 2 ;;
	--configs)
		CONFIGS=$2
		for c in $CONFIGS; do
			case " $ALL_CONFIGS " in *" $c "*) ;; *) echo "run.sh: unknown configuration $c (known: $ALL_CONFIGS)" >&2; exit 2 ;; esac
		done
		shift 2 ;;
	--quick) SIZE=16M; RUNTIME=1; REPS=1; COPIES=1; TREE=src/go; shift ;;
	--out) OUT=$2; shift 2 ;;
	--dir) WORK=$2; shift 2 ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done

STEPS="unpack find ls-lR du grep-r git-status${BUILD_PKG:+ build} rm-rf"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { echo "run.sh: $*" >&2; exit 1; }

[ -n "${CONFIGS// /}" ] || die "--configs names no configuration"
for tool in fio gocryptfs fusermount3 go tar git; do
	command -v "$tool" >/dev/null || die "$tool not found (run: make deps-bench)"
done
[ -x "$CRYPTPT" ] || die "$CRYPTPT missing (run: make build)"

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
fstype=$(stat -f -c %T "$WORK")
case "$fstype" in
tmpfs | ramfs) die "$WORK is on $fstype; set BENCH_DIR or --dir to a directory on a real disk" ;;
esac
# One run at a time per work directory.
exec 9>"$WORK/lock"
flock -n 9 || die "another run is using $WORK"
RUN="$WORK/run"
# A leftover from an aborted run: unmount anything still mounted below it.
if [ -d "$RUN" ]; then
	for m in "$RUN"/*/mnt; do
		if findmnt -M "$m" >/dev/null; then fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; fi
	done
	rm -rf "$RUN"
fi
mkdir -p "$RUN" "$OUT"

DROP=0
if [ "$(id -u)" = 0 ] && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then DROP=1; fi

MOUNTS=()
cleanup() {
	local rc=$?
	set +e
	for m in "${MOUNTS[@]}"; do
		# findmnt, not mountpoint: it also sees a mount whose root fails stat.
		if findmnt -M "$m" >/dev/null; then
			"$CRYPTPT" unmount "$m" >/dev/null 2>&1 || fusermount3 -u "$m" 2>/dev/null || umount -l "$m"
		fi
	done
	if [ "$KEEP" = 0 ]; then rm -rf "$RUN"; fi
	[ $rc = 0 ] || echo "run.sh: failed (exit $rc); mounts cleaned up" >&2
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the report helper, the tarballs -------------------------------------
log "building the report helper"
REPORT="$WORK/benchreport"
(cd "$ROOT" && go build -o "$REPORT" ./bench/report)

GOROOT_DIR=$(go env GOROOT)
# git must not read the user's or the system's configuration (an fsmonitor
# or untracked cache there would change what git status costs).
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
# The tree is a git checkout, committed and packed once per tarball outside
# the mounts, so that git status can run in every configuration.
TARBALL="$WORK/tree-$(echo "$TREE" | tr / _)-x$COPIES-git.tar"
if [ ! -f "$TARBALL" ]; then
	log "making $TARBALL ($COPIES x \$GOROOT/$TREE, committed to git)"
	tmp="$WORK/tree.tmp"
	rm -rf "$tmp" "$TARBALL.tmp"
	mkdir "$tmp"
	for i in $(seq 1 "$COPIES"); do
		tar -C "$GOROOT_DIR" -cf - --transform "s,^$TREE,tree$i," "$TREE" | tar -C "$tmp" -xf -
	done
	(
		cd "$tmp"
		git -c init.defaultBranch=main init -q
		git -c gc.auto=0 add -A -f .
		git -c gc.auto=0 -c user.name=bench -c user.email=bench@localhost commit -q -m "$COPIES x \$GOROOT/$TREE"
		git gc -q
	) || die "making the git checkout failed"
	tar -C "$tmp" -cf "$TARBALL.tmp" .
	rm -rf "$tmp"
	mv "$TARBALL.tmp" "$TARBALL"
fi
NFILES=$(tar -tvf "$TARBALL" | grep -c '^-')
MODTAR="$WORK/module.tar"
tar -C "$ROOT" --exclude=./.git --exclude=./bin --exclude=./bench/results -cf "$MODTAR" .
# The compile must not need the network: modules come from the module cache.
export GOPROXY=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
[ -z "$BUILD_PKG" ] || (cd "$ROOT" && go list -deps "$BUILD_PKG" >/dev/null) ||
	die "the modules of $BUILD_PKG are not all in the module cache (run: make deps-bench)"

# ---- configurations --------------------------------------------------------
PW="$RUN/passfile"
echo "bench-password" >"$PW"
printf '[policy]\nplaintext = ["/**"]\n' >"$RUN/plain.toml"
printf '[policy]\nplaintext = []\n' >"$RUN/enc.toml"
# A mixed mount: a plaintext area, so passthrough is on and the kernel refuses
# the writeback cache for the whole connection; the benchmark's files are
# all outside it, encrypted.
printf '[policy]\nplaintext = ["plain/"]\n' >"$RUN/mixed.toml"

declare -A PID TICKS

setup() {
	local c=$1 d="$RUN/$1"
	mkdir -p "$d/mnt"
	case "$c" in
	native) return ;;
	cryptpt-*)
		"$CRYPTPT" init --passfile "$PW" --kdf-time 2 --kdf-memory 19456 "$d/vault" >/dev/null
		local cfg=plain.toml extra=()
		# The writeback cache is on by default wherever passthrough is not
		# used; cryptpt-enc and cryptpt-nopt measure without it.
		[ "$c" = cryptpt-enc ] && cfg=enc.toml && extra=(--writeback=false)
		[ "$c" = cryptpt-encwb ] && cfg=enc.toml
		[ "$c" = cryptpt-nopt ] && extra=(--no-passthrough --writeback=false)
		[ "$c" = cryptpt-mixed ] && cfg=mixed.toml
		"$CRYPTPT" mount --config "$RUN/$cfg" --passfile "$PW" --log "$d/daemon.log" "${extra[@]}" "$d/vault" "$d/mnt"
		MOUNTS+=("$d/mnt")
		[ "$c" = cryptpt-mixed ] && mkdir "$d/mnt/plain" && echo plaintext >"$d/mnt/plain/file"
		"$CRYPTPT" status --json "$d/mnt" >"$d/status.json"
		PID[$c]=$(sed -n 's/^ *"pid": *\([0-9]*\).*/\1/p' "$d/status.json")
		local pt wb
		pt=$(sed -n 's/^ *"passthrough_active": *\([a-z]*\).*/\1/p' "$d/status.json")
		wb=$(sed -n 's/^ *"writeback_cache": *\([a-z]*\).*/\1/p' "$d/status.json")
		log "$c mounted, daemon pid ${PID[$c]}, passthrough_active=$pt, writeback_cache=$wb"
		[ "$c" != cryptpt-mixed ] || [ "$pt" = true ] ||
			log "WARNING: cryptpt-mixed runs without passthrough, so it is not the mixed mount it stands for"
		printf 'mount %s\tpolicy plaintext = %s, passthrough_active=%s, writeback_cache=%s%s\n' "$c" \
			"$(sed -n 's/^plaintext = //p' "$RUN/$cfg")" "$pt" "$wb" "${extra[*]:+, ${extra[*]}}" >>"$META"
		;;
	gocryptfs)
		mkdir -p "$d/cipher"
		gocryptfs -init -extpass "cat $PW" -q "$d/cipher" >/dev/null
		gocryptfs -extpass "cat $PW" -q -nosyslog "$d/cipher" "$d/mnt"
		MOUNTS+=("$d/mnt")
		PID[$c]=$(pgrep -f -- "gocryptfs .*-fg.* $d/cipher $d/mnt\$" | head -1)
		[ -n "${PID[$c]}" ] || die "gocryptfs daemon pid not found"
		log "$c mounted, daemon pid ${PID[$c]}"
		;;
	esac
}

RAW="$RUN/raw.tsv"
: >"$RAW"
# record REP JOB CONFIG VALUE UNIT
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RAW"; }

dropcaches() { sync; [ "$DROP" = 1 ] && echo 3 >/proc/sys/vm/drop_caches; true; }

# fio_run CONFIG RW TIMEBASED -> prints bandwidth in KiB/s
fio_run() {
	local c=$1 rw=$2 tb=$3 out="$RUN/$1/fio.json" args=()
	# time_based jobs loop over the file; fio's default invalidate=1 would
	# drop the file's cache at every loop (but not through passthrough).
	[ "$tb" = 1 ] && args=(--time_based --invalidate=0)
	fio --name="$rw" --filename="$RUN/$c/mnt/fio.dat" --rw="$rw" --bs=4k \
		--ioengine=sync --direct=0 --fsync_on_close=1 --size="$SIZE" \
		--runtime="$RUNTIME" "${args[@]}" --output-format=json >"$out" 2>"$RUN/$c/fio.err" ||
		{ cat "$RUN/$c/fio.err" >&2; die "fio $rw failed on $c"; }
	"$REPORT" fio-bw "$out"
}

# timed CONFIG CMD... runs CMD inside the mount, prints elapsed seconds
timed() {
	local c=$1; shift
	local t0=$EPOCHREALTIME
	(cd "$RUN/$c/mnt" && "$@") >/dev/null 2>"$RUN/$c/step.err" ||
		{ cat "$RUN/$c/step.err" >&2; die "$* failed on $c"; }
	local t1=$EPOCHREALTIME
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}

# step_cmd STEP prints the shell command of a small-files step, run in the
# mount's root. The metadata steps work on the tree alone (src), so that
# their requests can be counted per file of the tree.
step_cmd() {
	case $1 in
	unpack) echo "mkdir src && tar -C src -xf '$TARBALL' && mkdir mod && tar -C mod -xf '$MODTAR' && sync" ;;
	find) echo 'cd src && find . | wc -l' ;;
	ls-lR) echo 'cd src && ls -lR' ;;
	du) echo 'cd src && du -s .' ;;
	grep-r) echo 'cd src && { grep -r ThisStringIsNotThere . || [ $? = 1 ]; }' ;;
	git-status) echo 'cd src && git status' ;;
	build) echo "cd mod && GOCACHE=\$PWD/../gocache go build -o ../cryptpt.bin '$BUILD_PKG'" ;;
	rm-rf) echo 'rm -rf src mod gocache cryptpt.bin && sync' ;;
	*) die "unknown step $1" ;;
	esac
}

REQS="$RUN/requests.tsv"
: >"$REQS"
# snap CONFIG NAME saves a cryptpt daemon's request counters (cryptpt status
# --json asks the daemon over its socket: no FUSE request of its own).
snap() {
	case $1 in cryptpt-*) "$CRYPTPT" status --json "$RUN/$1/mnt" >"$RUN/$1/req-$2.json" ;; esac
}

# measure REP STEP JOB CONFIG: one timed run of a small-files step, recorded
# as JOB, with the FUSE requests the daemon answered during it.
measure() {
	local rep=$1 step=$2 job=$3 c=$4 s cmd per=""
	cmd=$(step_cmd "$step")
	snap "$c" before
	s=$(timed "$c" sh -c "$cmd")
	record "$rep" "$job" "$c" "$s" s
	case $c in
	cryptpt-*)
		snap "$c" after
		"$REPORT" reqdiff "$rep" "$job" "$c" "$RUN/$c/req-before.json" "$RUN/$c/req-after.json" >"$RUN/$c/req.tsv"
		cat "$RUN/$c/req.tsv" >>"$REQS"
		per=$(awk -v n="$NFILES" '$4 == "ALL" { printf ", %.2f requests/file", $5 / n }' "$RUN/$c/req.tsv")
		;;
	esac
	log "$job $c: ${s}s$per"
}

daemon_sample() { # CONFIG REP: peak and current RSS (KiB), CPU seconds
	local c=$1 rep=$2 p=${PID[$1]:-}
	[ -n "$p" ] || return 0
	[ -r "/proc/$p/status" ] || die "$c daemon (pid $p) is gone"
	local hwm rss ticks
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status")
	rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status")
	ticks=$(sed 's/.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }')
	record "$rep" daemon-peak-rss "$c" "$hwm" KiB
	record "$rep" daemon-rss "$c" "$rss" KiB
	# CPU seconds spent during this repetition (user + system).
	record "$rep" daemon-cpu "$c" "$(awk -v t="$ticks" -v p="${TICKS[$c]:-0}" -v h="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (t - p) / h }')" s
	TICKS[$c]=$ticks
}

# ---- metadata -------------------------------------------------------------
META="$RUN/meta.tsv"
{
	printf 'date\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	printf 'host\t%s\n' "$(hostname)"
	printf 'cpu\t%s\n' "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	printf 'nproc\t%s\n' "$(nproc)"
	printf 'load\t%s (1, 5, 15 min) at the start\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
	printf 'ram\t%s\n' "$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	printf 'kernel\t%s\n' "$(uname -srm)"
	printf 'disk\t%s (%s) at %s\n' "$(findmnt -no SOURCE -T "$WORK")" "$(findmnt -no FSTYPE -T "$WORK")" "$WORK"
	printf 'cryptpt\t%s\n' "$("$CRYPTPT" --version 2>&1 | head -1)"
	printf 'gocryptfs\t%s\n' "$(gocryptfs --version 2>&1 | head -1)"
	printf 'fio\t%s\n' "$(fio --version 2>&1 | head -1)"
	printf 'go\t%s\n' "$(go version)"
	printf 'fuse\t%s\n' "$(fusermount3 --version 2>&1 | head -1)"
	printf 'size\t%s\n' "$SIZE"
	printf 'runtime\t%s s\n' "$RUNTIME"
	printf 'fio_params\t--ioengine=sync --bs=4k --fsync_on_close=1 --direct=0 --size=%s --runtime=%s; warm and write jobs add --time_based --invalidate=0\n' "$SIZE" "$RUNTIME"
	printf 'reps\t%s\n' "$REPS"
	printf 'drop_caches\t%s\n' "$DROP"
	printf 'files\t%s\n' "$NFILES"
	printf 'tree\t$GOROOT/%s, %s cop%s, a git checkout (git %s)\n' "$TREE" "$COPIES" "$([ "$COPIES" = 1 ] && echo y || echo ies)" "$(git --version | awk '{ print $3 }')"
	if [ -n "$BUILD_PKG" ]; then
		printf 'build\tgo build %s (module cryptpt, GOCACHE empty inside the mount, GOMODCACHE outside, GOPROXY=off)\n' "$BUILD_PKG"
	else
		printf 'build\tnot run (opt-in: --build PKG)\n'
	fi
	printf 'configs\t%s\n' "$CONFIGS"
} >"$META"

log "work dir $WORK ($fstype); size=$SIZE runtime=${RUNTIME}s reps=$REPS files=$NFILES drop_caches=$DROP"
[ "$DROP" = 1 ] || log "WARNING: not root, caches are not dropped: 'cold' reads are not cold"
for c in $CONFIGS; do setup "$c"; done

T_START=$SECONDS
for rep in $(seq 1 "$REPS"); do
	# The configurations take turns in a different order every repetition,
	# so none always runs first (right after another step) or last.
	read -ra all <<<"$CONFIGS"
	k=$(((rep - 1) % ${#all[@]}))
	ORDER="${all[*]:k} ${all[*]:0:k}"
	log "== repetition $rep/$REPS, order: $ORDER"
	for c in $CONFIGS; do
		rm -f "$RUN/$c/mnt/fio.dat"
		fio --name=layout --filename="$RUN/$c/mnt/fio.dat" --rw=write --bs=1M --size="$SIZE" \
			--ioengine=sync --fsync_on_close=1 >/dev/null || die "fio layout failed on $c"
	done
	log "laid out the $SIZE fio file in each configuration"
	for rw in read randread; do
		for c in $ORDER; do
			# Cold: caches dropped, the file read at most once (no time_based loop).
			dropcaches
			bw=$(fio_run "$c" "$rw" 0)
			record "$rep" "$rw-cold" "$c" "$bw" KiB/s
			# Warm: the whole file read once (a cold randread covers only
			# part of it), then the same job twice, the second one counts.
			cat "$RUN/$c/mnt/fio.dat" >/dev/null
			fio_run "$c" "$rw" 1 >/dev/null
			bw2=$(fio_run "$c" "$rw" 1)
			record "$rep" "$rw-warm" "$c" "$bw2" KiB/s
			log "$rw $c: cold $bw KiB/s, warm $bw2 KiB/s"
		done
	done
	for rw in write randwrite; do
		for c in $ORDER; do
			bw=$(fio_run "$c" "$rw" 1)
			record "$rep" "$rw" "$c" "$bw" KiB/s
			log "$rw $c: $bw KiB/s"
		done
	done
	for c in $CONFIGS; do rm -f "$RUN/$c/mnt/fio.dat"; done

	# Small files: each step across all configurations before the next step.
	# The metadata steps run right after dropping the caches (cold), then
	# twice more in a row, the second counting as warm. The run in between
	# fills what the cold one leaves: the kernel marks a directory's atime
	# stale whenever it reads its listing from the daemon, so the run right
	# after a cold one still asks for each directory's attributes once
	# (cryptpt: one GETATTR per directory). gocryptfs caches for a second
	# only, so for it that run would change nothing: it is skipped there.
	for step in $STEPS; do
		for c in $ORDER; do
			case $step in
			find | ls-lR | du | grep-r | git-status)
				dropcaches
				measure "$rep" "$step" "$step-cold" "$c"
				if [ "$c" != gocryptfs ]; then
					timed "$c" sh -c "$(step_cmd "$step")" >/dev/null
				fi
				measure "$rep" "$step" "$step-warm" "$c"
				;;
			*) measure "$rep" "$step" "$step" "$c" ;;
			esac
			# The index's stat data came from another directory: the
			# first git status rereads every file, untimed.
			if [ "$step" = unpack ]; then
				(cd "$RUN/$c/mnt/src" && git status >/dev/null) || die "git status failed on $c"
			fi
		done
	done
	for c in $CONFIGS; do daemon_sample "$c" "$rep"; done
	log "repetition $rep took $((SECONDS - T_START))s so far"
done

for c in $CONFIGS; do
	d="$RUN/$c"
	if [ -f "$d/daemon.log" ] && grep -qiE 'error|panic|warn' "$d/daemon.log"; then
		log "$c daemon log has errors/warnings:"
		grep -iE 'error|panic|warn' "$d/daemon.log" | sort | uniq -c | sort -rn | head -5
		grep -iE 'error|panic|warn' "$d/daemon.log" | head -20 >"$RUN/$c.logerr"
	fi
done
printf 'elapsed\t%ss (the repetitions, after the tarball and the mounts)\n' "$((SECONDS - T_START))" >>"$META"
printf 'load_end\t%s (1, 5, 15 min) at the end\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$META"

BASE="$OUT/$(date -u +%Y-%m-%d)-$(hostname -s)"
"$REPORT" report --meta "$META" --raw "$RAW" --requests "$REQS" --md "$BASE.md" --svg "$BASE.svg" --json "$BASE.json"
log "wrote $BASE.md $BASE.svg $BASE.json"
