"""The regularization study's library: one package per role, imported by the stages/ entry points.

config (params.yaml as pydantic models, paths, errors) <- data, training, tracking <-
evaluation, search, reports. No package imports one to its right or above it.
"""
