"""Interoperability with other toolkits: export to transformers' LLaVA layout, import from others.

Import-light: every module here loads torch and transformers inside the functions that need them.
"""
