"""Lethe: deprovision and forget a person across every connected system, and prove it."""
