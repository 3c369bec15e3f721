"""The machine around the labs: preflight checks and the root-namespace snapshot."""
