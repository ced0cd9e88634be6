"""Loopback contract fakes of hosted APIs (built from their documented shapes)."""
