"""mer_core: the logic of mer-companion (micro-expression recognition from apex frames).

Modules, in data-flow order: ``config`` (params.yaml), ``datasets`` and ``synthetic`` (sample
index), ``apex`` and ``frames`` (apex spotting, frame cache), ``models``, ``losses`` and ``train``
(LOSO training), ``metrics``, ``stats``, ``evaluate`` and ``leakage`` (evaluation), ``table4``,
``table4_format``, ``table4_figures`` and ``report`` (Table 4, README section). ``io`` writes
atomically, ``charts`` draws and saves the shared charts.
"""
__version__ = "0.1.0"
