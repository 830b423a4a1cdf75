"""The viewer's panels, one widget per module."""
