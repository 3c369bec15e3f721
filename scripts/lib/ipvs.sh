# scripts/lib/ipvs.sh — sourced (bash) by scripts/bootstrap, drlab, test and vm-run.
# Not for scripts/collect, which is standalone POSIX sh run via `ssh HOST sh -s`.

# have_ipvs: true when this kernel has IPVS (loading ip_vs first if it is a module).
have_ipvs() {
  modprobe -q ip_vs 2>/dev/null || true
  [[ -e /proc/net/ip_vs || -d /sys/module/ip_vs ]]
}
