"""Dispatch: commands Enexa sends to a site's Amperio middleware, and what became of them."""
