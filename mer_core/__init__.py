"""mer_core: the logic of mer-companion (micro-expression recognition from apex frames).

Modules, in data-flow order: ``config`` (params.yaml), ``datasets``, ``synthetic`` and
``synthetic_faces`` (sample index; the synthetic set's plan and files, its drawn frames), ``apex``
and ``frames`` (apex spotting, frame cache), ``models``, ``losses`` and ``train`` (LOSO training),
``metrics`` and ``report`` (evaluation, Table 4). ``io`` writes atomically.
"""
__version__ = "0.1.0"
