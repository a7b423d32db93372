"""A run's novelty archive (integrity check step 4, paper §3.3) and the scope a child's novelty
is checked against.

The archive holds the normalised phenotype of every candidate a run has drawn, initial genomes
included, row ``i`` being candidate ``i``. ``scope`` picks what a new candidate must differ from:
the whole archive (``"archive"``: every genome ever drawn, lfe's first rule; also the rule among
the initial genomes) or the current population and the children in flight (``"population"``:
Alg. 1, §3.3, the authors' ``self.gen``; a copy may return once its original aged out), a
``subset`` of the archive's rows. ``rebuild`` recomputes the archive from a saved state, so a
resumed run judges novelty exactly as the run it continues. No JAX (the controller's side).
"""

from __future__ import annotations

import numpy as np

from lfe.core import genome as genome_lib
from lfe.core import integrity
from lfe.core.state import Candidate, State

SCOPES = ("population", "archive")


def scope(novelty: str, state: State, archive: integrity.Archive) -> integrity.Archive:
    """What a candidate drawn now must be novel against (module docstring), as a new
    ``Archive`` the caller may extend; ``archive`` itself is not changed."""
    if novelty == "archive" or state.phase == "initial":
        return archive.copy()
    return population_scope(state, archive)


def population_scope(state: State, archive: integrity.Archive) -> integrity.Archive:
    """The phenotypes of the population and of the candidates in flight: the rows of their ids
    in the run's archive (every candidate, in id order)."""
    if len(archive) != state.next_id:
        raise ValueError(f"the archive holds {len(archive)} phenotypes but the state has drawn "
                         f"{state.next_id} candidates; rebuild it (lfe.core.archive.rebuild)")
    return archive.subset([m.id for m in state.population] + [c.id for c in state.in_flight])


def rebuild(state: State, chunk: int = 256) -> integrity.Archive:
    """The novelty archive of the run, recomputed from the genomes in the state.

    Every candidate ever drawn (initial ones included) joined the archive in id order, and
    phenotypes are a pure function of the genome, so this equals the live archive.
    """
    seen = sorted(state.evaluated + state.in_flight + state.initial_queue, key=lambda c: c.id)
    archive = integrity.Archive()
    for start in range(0, len(seen), chunk):
        for phenotype, eq in phenotypes(seen[start: start + chunk]):
            archive.add(phenotype, eq)
    return archive


def phenotypes(candidates: list[Candidate]) -> list[tuple[np.ndarray, str]]:
    """``(normalised phenotype, equation)`` of each candidate's genome, as the check gave them
    when it was admitted (each judged alone: a pure function of the genome)."""
    genomes = [genome_lib.from_dict(c.genome) for c in candidates]
    out = []
    for c, v in zip(candidates, integrity.check_batch(genomes, integrity.Archive()), strict=True):
        if v.phenotype is None:
            raise ValueError(f"candidate {c.id} in the state fails the check ({v.reason})")
        out.append((v.phenotype, v.equation))
    return out
