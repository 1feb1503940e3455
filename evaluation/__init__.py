"""pinlanding.evaluation stage."""
