"""mer_core: the logic of mer-companion (micro-expression recognition from apex frames).

Modules, in data-flow order (one job each; README "Where things are" maps them to the stages):

- names and settings: ``vocab`` (every choice a user can make), ``config`` (params.yaml);
- data stage: ``sheets`` (coding sheets), ``images`` (frame files), ``datasets`` (the index,
  protocols, folds), ``synthetic`` and ``synthetic_faces`` (the synthetic set),
  ``synthetic_standins`` (synthetic SAMM- and SMIC-E-shaped stand-ins), ``card``;
- apex stage: ``apex`` (spotters), ``apex_scores`` (scores, per-fold spotter), ``faces`` (face
  crop), ``apex_stage`` (frame caches), ``apex_figures``;
- train stage: ``models``, ``losses``, ``machine`` (device, precision), ``fold`` (one fold),
  ``fingerprints``, ``loso`` (the LOSO driver), ``gradcam``, ``train_figures``;
- evaluate stage: ``metrics`` (scores), ``stats`` (intervals, tests), ``evaluate`` (metrics.json
  and its figures), ``leakage`` (what picking the epoch on the test subject would inflate);
- table4 stage: ``table4`` (rows and numbers), ``table4_format`` (Markdown, LaTeX, CSV),
  ``table4_figures``, ``report`` (header, README section); ``charts`` (shared plotting);
- between stages: ``handover`` (the files stages hand each other), ``io`` (atomic writes),
  ``deps`` (each stage's code deps), ``profiles`` (named parameter sets).
"""
__version__ = "0.1.0"
