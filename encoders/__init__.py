"""pinlanding.encoders stage."""
