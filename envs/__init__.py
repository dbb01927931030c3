"""Gymnasium environments over the simulator (issue 4; nothing registered yet)."""
