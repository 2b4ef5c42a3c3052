# Shared helpers for bench/*.sh (sourced, not run).

# machine_section SCRATCH: the "## Machine" markdown section of a results file,
# describing this machine and the filesystem that holds SCRATCH.
machine_section() {
	local scratch=$1 mem cpu
	mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
	cpu=$(awk -F: '/model name/ {sub(/^ +/, "", $2); print $2; exit}' /proc/cpuinfo)
	echo "## Machine"
	echo
	echo "- CPU: ${cpu:-unknown}, nproc $(nproc)"
	echo "- memory: $mem"
	echo "- kernel: $(uname -r)"
	echo "- scratch: $scratch ($(df -T "$scratch" | awk 'NR==2 {print $2 " on " $1}'))"
	echo "- fio: $(fio --version 2>/dev/null || echo unknown)"
	echo "- go: $(go version 2>/dev/null || echo unknown)"
	echo "- git: $(git rev-parse --short HEAD 2>/dev/null || echo 'no commits') $([[ -n $(git status --porcelain 2>/dev/null) ]] && echo '(dirty)')"
}

# results_path NAME: bench/results/DATE-NAME.md, or DATE-NAME-N.md if that exists.
results_path() {
	local out
	out=bench/results/$(date +%F)-$1.md
	if [[ -e $out ]]; then
		local n=2
		while [[ -e ${out%.md}-$n.md ]]; do n=$((n + 1)); done
		out=${out%.md}-$n.md
	fi
	echo "$out"
}
