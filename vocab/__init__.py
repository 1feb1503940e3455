"""pinlanding.vocab stage."""
