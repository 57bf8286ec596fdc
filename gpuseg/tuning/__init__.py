"""Choosing eps: k-distance curves and their knee, and the search for the eps of a target noise fraction."""
