"""Test helpers shipped with the package (fakes for Kamailio\x27s KSR)."""
