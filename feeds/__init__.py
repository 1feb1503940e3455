"""pinlanding.feeds stage."""
