"""Optical-flow extraction: videos to rawframes (RGB JPEGs, quantised flow JPEGs, meta.json)."""
