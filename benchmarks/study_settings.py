"""The study's setting of one notebook, which the benchmarks take as their defaults."""
from __future__ import annotations

import ast

from kn_utils.runs import declared_parameters, notebook_parameters, source_of


def study_parameters(notebook: str, profile: str = "full") -> dict:
    """`notebook`'s parameters in a run of `profile`: the defaults its source declares, then the profile's settings."""
    declared = declared_parameters(source_of(notebook[:2]))
    return {**{name: ast.literal_eval(spec["default"]) for name, spec in declared.items()},
            **notebook_parameters(profile, notebook)}
