"""Synthetic MURA: a dataset with MURA v1.1's exact layout whose images look like radiographs.

The real MURA needs a licence; this package writes a stand-in so
the whole pipeline can be tried, tested and benchmarked without it:

* ``plan``: which studies exist (splits, patients, labels, views, findings), cheaply;
* ``anatomy``: one bone arrangement per study type and projection;
* ``findings``: fractures, hardware, lesions, periosteal reaction, arthritis,
  dislocations, and the normal variants that look a bit like them;
* ``shapes`` and ``radiograph``: projection, exposure, noise, collimation, marker;
* ``study`` and ``dataset``: rendering the views of a study, writing the tree.

>>> from muracli.synthetic import generate_synthetic
>>> summary = generate_synthetic("data", studies=400, seed=0)  # doctest: +SKIP
"""

from muracli.synthetic.dataset import FINDINGS_CSV, SyntheticSummary, generate_synthetic
from muracli.synthetic.findings import DIFFICULTIES, KINDS
from muracli.synthetic.plan import StudyPlan, plan_studies

__all__ = ["DIFFICULTIES", "FINDINGS_CSV", "KINDS", "StudyPlan", "SyntheticSummary", "generate_synthetic", "plan_studies"]
