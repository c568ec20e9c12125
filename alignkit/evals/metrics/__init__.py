"""Metric functions, separate from model calls (pure: lists/arrays in, numbers out).

Each area lives in its own module and is re-exported here with one import line per module.
"""
