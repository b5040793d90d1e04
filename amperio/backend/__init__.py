"""Amperio as one backend for many sites: the shared store, dispatch to a site's queue, reports."""
