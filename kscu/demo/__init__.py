"""The embedded demo world: a procedural image domain, its prompts, a concept classifier and
the training of a tiny Stable-Diffusion-architecture model on it.

It is a dataset and a benchmark (our offline counterpart of UnlearnCanvas), not part of the
method: kscu's method code treats the demo model exactly like a real SD1.x pipeline.
"""
