"""mer_core: the logic of mer-companion (micro-expression recognition from apex frames).

Modules, in data-flow order: ``config`` (params.yaml), ``sheets`` and ``images`` (coding sheets,
frame files), ``datasets`` and ``synthetic`` (sample index), ``apex`` and ``frames`` (apex
spotting, frame cache), ``models``, ``losses`` and ``train`` (LOSO training), ``metrics`` and
``report`` (evaluation, Table 4). ``io`` writes atomically.
"""
__version__ = "0.1.0"
