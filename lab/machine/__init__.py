"""The machine around the labs.

:mod:`.preflight` (root, ipvsadm, IPVS, in a VM or not), :mod:`.hostcheck` (the
root-namespace snapshot compared before and after a session), :mod:`.vm` (the VM
that stays up: lifecycle, the server in it, the host end of a command) and
:mod:`.dmesg` (the kernel log's warnings that fail a run in a VM).
"""
