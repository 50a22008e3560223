"""Reliability tests (issue 8): faults, lost responses, crashes, bad inputs, secrets."""
