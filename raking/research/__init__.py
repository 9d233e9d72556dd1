"""Research applications of balancing, each reproducing one section of ``theory.md``.

- :mod:`raking.research.clip_experiment`: the zero-shot CLIP experiment on frozen embeddings
  (§7), with the balanced losses of :mod:`raking.torch`;
- :mod:`raking.research.pmsn`: the PMSN toy on a uniform cluster prior (§6);
- :mod:`raking.research.curation` and :mod:`raking.research.curation_data`: metadata curation
  (MetaCLIP) as one balancing step on a sparse caption x keyword table (§8).
"""
