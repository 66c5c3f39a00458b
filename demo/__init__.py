"""The demo: a model that needs no endpoint, three workflows, their sandboxes, seed and
feed. Nothing in the runtime imports it.
"""
