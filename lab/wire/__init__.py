"""The wire: frames built and decoded by hand, and packet sockets inside lab hosts."""
